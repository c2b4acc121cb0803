"""The optional cross-encoder re-ranker: off by default; when configured it re-orders the best fused results
and says so in each result's match; when it cannot load, search goes on without it and says why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import msgspec
import pytest

from daemon import NewMemory, SearchQuery, Services, agent_named, open_services
from daemon.config import RerankerConfig
from tests.conftest import make_config
from tests.cross_encoder import build_cross_encoder

pytestmark = pytest.mark.anyio

BEES = [
    "Fay keeps bees on the roof of the garage",
    "The garage roof was repaired in spring",
    "Honey from the hives tastes of lime blossom",
    "Fay's neighbour complained about the noise from the garage",
]


@pytest.fixture(scope="session")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    return build_cross_encoder(model_dir, tmp_path_factory.mktemp("cross-encoder"))


@asynccontextmanager
async def _open(tmp_path: Path, model_dir: Path, reranker: RerankerConfig) -> AsyncIterator[Services]:
    config = msgspec.structs.replace(make_config(tmp_path, str(model_dir)), reranker=reranker)
    async with open_services(config) as core:
        await core.vectors.attached.wait()
        with anyio.fail_after(60):
            await core.reranker.settled.wait()
        await core.identities.add("fay")
        await core.additions.add_batch(agent_named("fay"), None, [NewMemory(content=text) for text in BEES])
        yield core


@pytest.fixture
async def reranked(tmp_path: Path, model_dir: Path, cross_encoder_dir: Path) -> AsyncIterator[Services]:
    wanted = RerankerConfig(model_path=str(cross_encoder_dir), candidates=3)
    async with _open(tmp_path, model_dir, wanted) as core:
        yield core


async def test_the_reranker_is_off_by_default(services: Services) -> None:
    await services.identities.add("fay")
    await services.additions.add(agent_named("fay"), None, NewMemory(content=BEES[0]))
    result = await services.search.search(agent_named("fay"), SearchQuery(query="bees"))
    assert services.reranker.state == "disabled"
    assert result.note is None
    assert result.results[0].match.rerank_score is None


async def test_a_configured_reranker_orders_the_best_fused_results(reranked: Services) -> None:
    result = await reranked.search.search(
        agent_named("fay"), SearchQuery(query="where are the bees kept", k=4)
    )
    assert reranked.reranker.state == "ready"
    assert result.note is None
    scores = [hit.match.rerank_score for hit in result.results]
    assert all(score is not None for score in scores[:3])  # the best 3 fused results, re-ordered
    assert scores[:3] == sorted(scores[:3], reverse=True)  # type: ignore[type-var]
    assert scores[3] is None  # beyond [reranker] candidates: left in fused order


async def test_a_reranker_that_cannot_load_leaves_search_working_and_says_why(
    tmp_path: Path, model_dir: Path
) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    async with _open(tmp_path, model_dir, RerankerConfig(model_path=str(empty))) as core:
        result = await core.search.search(agent_named("fay"), SearchQuery(query="bees"))
        assert core.reranker.state == "failed"
        assert result.results[0].content == BEES[0]
        assert result.note is not None and "re-ranker could not be loaded" in result.note
        assert "model.onnx" in result.note
