"""The in-memory vector cache gives exactly what a brute-force search over the stored vectors gives."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import NewMemory, SearchQuery, agent_named, open_services
from daemon.vector_cache import VectorCache
from tests.conftest import make_config


def unit(rng: np.random.Generator, n: int, dims: int = 8) -> np.ndarray:
    vectors = rng.standard_normal((n, dims)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


BLOCKS = st.sampled_from([1, 7, 64, 8192])  # rows per block: one, a few, and more than any test holds


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 300),
    st.integers(1, 20),
    st.integers(0, 10_000),
    st.lists(st.integers(0, 3), max_size=3),
    BLOCKS,
)
def test_nearest_matches_brute_force_within_the_given_cubes(
    n: int, k: int, seed: int, wanted: list[int], block_rows: int
) -> None:
    rng = np.random.default_rng(seed)
    vectors, cubes = unit(rng, n), rng.integers(0, 4, n)
    cache = VectorCache(8, block_rows=block_rows)
    cache.upsert((seq, int(cubes[seq]), vectors[seq]) for seq in range(n))
    query = unit(rng, 1)[0]
    got = cache.nearest(query, wanted, k)
    pool = [seq for seq in range(n) if cubes[seq] in wanted]
    expected = sorted(pool, key=lambda seq: (-float(vectors[seq] @ query), seq))[:k]
    assert [seq for seq, _ in got] == expected or np.allclose(
        [sim for _, sim in got], [float(vectors[seq] @ query) for seq in expected], atol=1e-6
    )


@pytest.mark.parametrize("block_rows", [64, 8192])
def test_a_new_vector_replaces_the_old_one_and_compaction_keeps_the_rest(block_rows: int) -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 5000)
    cache = VectorCache(8, block_rows=block_rows)
    cache.upsert((seq, 1, vectors[seq]) for seq in range(5000))
    for _ in range(3):  # enough replacements to trigger compaction
        cache.upsert((seq, 1, vectors[(seq + 1) % 5000]) for seq in range(2000))
    assert len(cache) == 5000
    (best, similarity), *_ = cache.nearest(vectors[1], [1], 3)
    assert best == 0 and similarity == pytest.approx(1.0)  # seq 0 now holds vector 1; seq 1 holds vector 2
    (best, _), *_ = cache.nearest(vectors[2], [1], 3)
    assert best == 1
    assert cache.similarities(vectors[1], [0, 1, 4999]) == pytest.approx(
        {0: 1.0, 1: float(vectors[2] @ vectors[1]), 4999: float(vectors[4999] @ vectors[1])}
    )
    cache.discard([0])
    assert 0 not in [seq for seq, _ in cache.nearest(vectors[1], [1], 10)]


@pytest.mark.anyio
async def test_search_gives_the_same_results_with_and_without_the_cache(
    tmp_path: Path, model_dir: Path
) -> None:
    results = []
    for use_cache in (True, False):
        directory = tmp_path / str(use_cache)
        directory.mkdir()
        config = make_config(directory, str(model_dir))
        config = msgspec.structs.replace(
            config, search=msgspec.structs.replace(config.search, vector_cache=use_cache)
        )
        async with open_services(config) as services:
            await services.vectors.attached.wait()
            await services.identities.add("alice")
            alice = agent_named("alice")
            await services.additions.add_batch(
                alice, None, [NewMemory(content=f"Memory number {i} about topic {i % 7}") for i in range(60)]
            )
            found = await services.search.search(alice, SearchQuery(query="topic three", mode="vector", k=20))
            results.append([(hit.content, hit.match.similarity) for hit in found.results])
    assert [c for c, _ in results[0]] == [c for c, _ in results[1]]
    assert np.allclose([s for _, s in results[0]], [s for _, s in results[1]], atol=1e-3)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 300),
    st.integers(1, 20),
    st.integers(0, 10_000),
    st.lists(st.integers(0, 299), max_size=40),
    st.lists(st.integers(0, 299), max_size=40),
    st.booleans(),
    BLOCKS,
)
def test_nearest_matches_brute_force_after_replacements_and_discards(
    n: int, k: int, seed: int, replaced: list[int], discarded: list[int], every_cube: bool, block_rows: int
) -> None:
    """Searching every cube that holds vectors skips the cube mask; replaced and discarded rows must still
    never be returned, and the answer is the brute-force one either way."""
    rng = np.random.default_rng(seed)
    vectors, cubes = unit(rng, n), rng.integers(0, 3, n)
    cache = VectorCache(8, block_rows=block_rows)
    cache.upsert((seq, int(cubes[seq]), vectors[seq]) for seq in range(n))
    replaced = [seq for seq in replaced if seq < n]
    fresh = unit(rng, len(replaced))
    cache.upsert((seq, int(cubes[seq]), fresh[i]) for i, seq in enumerate(replaced))
    for i, seq in enumerate(replaced):
        vectors[seq] = fresh[i]
    gone = {seq for seq in discarded if seq < n}
    cache.discard(gone)
    wanted = [0, 1, 2] if every_cube else [1]
    query = unit(rng, 1)[0]
    got = cache.nearest(query, wanted, k)
    pool = [seq for seq in range(n) if cubes[seq] in wanted and seq not in gone]
    expected = sorted(pool, key=lambda seq: (-float(vectors[seq] @ query), seq))[:k]
    assert len(got) == len(expected)
    assert not {seq for seq, _ in got} & gone
    assert np.allclose([sim for _, sim in got], [float(vectors[seq] @ query) for seq in expected], atol=1e-6)
    assert all(np.isclose(sim, float(vectors[seq] @ query), atol=1e-6) for seq, sim in got)


def test_adding_past_a_full_cache_never_copies_its_vectors() -> None:
    """The cache filled to the brim, then one more row: memory grows by one block, never by a second copy of
    every vector (that copy was the daemon's RSS peak at 100k memories)."""
    rows, dims = 20_000, 384
    vectors = unit(np.random.default_rng(3), rows + 1, dims)
    cache = VectorCache(dims, block_rows=4096)
    cache.reserve(rows)
    cache.upsert((seq, 1, vectors[seq]) for seq in range(rows))
    held = cache.vector_bytes
    assert held <= (rows + 4096) * dims * 4
    tracemalloc.start()
    try:
        cache.upsert([(rows, 1, vectors[rows])])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < held / 2, f"adding one row allocated {peak} bytes with {held} held"
    assert cache.nearest(vectors[rows], [1], 1)[0][0] == rows


@pytest.mark.anyio
async def test_vectors_stored_before_a_restart_are_in_the_cache_after_it(
    tmp_path: Path, model_dir: Path
) -> None:
    """Steps: add memories, close, open again (the cache is filled from the table, page by page); a vector
    search gives the same hits and similarities as before the restart."""
    config = make_config(tmp_path, str(model_dir))
    query = SearchQuery(query="topic three", mode="vector", k=10)
    alice = agent_named("alice")
    answers = []
    for first in (True, False):
        async with open_services(config) as services:
            await services.vectors.attached.wait()
            if first:
                await services.identities.add("alice")
                await services.additions.add_batch(
                    alice,
                    None,
                    [NewMemory(content=f"Memory number {i} about topic {i % 7}") for i in range(40)],
                )
            found = await services.search.search(alice, query)
            answers.append([(hit.content, hit.match.similarity) for hit in found.results])
    assert len(answers[0]) == 10 and answers[0] == answers[1]
