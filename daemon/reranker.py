"""An optional cross-encoder re-ranker (fastembed, ONNX): it reads the query together with each of the best
fused results and re-orders them. Off unless `[reranker]` names a model.

`Reranker.run` is a service owned by the daemon's task group: it loads the model on a worker thread and
returns; until then (or if loading failed) search results are simply not re-ranked, and say so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from daemon.config import RerankerConfig
from daemon.embedder import State, read_at_most
from daemon.errors import Unavailable

log = logging.getLogger(__name__)

_LOCAL_MODEL_FILE = "model.onnx"


def load_cross_encoder(config: RerankerConfig, cache_dir: Path) -> Any:
    """Load the fastembed cross-encoder (blocking: call on a worker thread)."""
    from fastembed.common.model_description import ModelSource
    from fastembed.rerank.cross_encoder import TextCrossEncoder

    kwargs: dict[str, Any] = {"cache_dir": str(cache_dir), "threads": config.threads}
    name = config.model
    if config.model_path:
        if not Path(config.model_path, _LOCAL_MODEL_FILE).is_file():
            raise FileNotFoundError(f"[reranker] model_path {config.model_path} has no {_LOCAL_MODEL_FILE}")
        # A local copy is registered under a name of its own, so that its file layout is ours to say.
        name = f"memos-local/{Path(config.model_path).resolve()}"
        known = {model["model"].lower() for model in TextCrossEncoder.list_supported_models()}
        if name.lower() not in known:
            TextCrossEncoder.add_custom_model(
                name, sources=ModelSource(hf="memos/local"), model_file=_LOCAL_MODEL_FILE
            )
        kwargs["specific_model_path"] = config.model_path
    model = TextCrossEncoder(name, **kwargs)
    read_at_most(model, config.max_tokens)
    return model


class Reranker:
    def __init__(self, config: RerankerConfig, cache_dir: Path) -> None:
        self.config = config
        self._cache_dir = cache_dir
        self._model: Any = None
        self.state: State = "loading" if config.enabled else "disabled"
        self.problem: str | None = None
        self._one_at_a_time = anyio.CapacityLimiter(1)  # onnxruntime already uses every core
        self.settled = anyio.Event()  # set once loading has ended, either way

    @property
    def name(self) -> str:
        return self.config.model_path or self.config.model

    def unavailable_reason(self) -> str | None:
        """Why results are not re-ranked although a re-ranker is configured (None: they are, or none is)."""
        if self.state == "loading":
            return "the re-ranker is still loading; results are not re-ranked yet"
        if self.state == "failed":
            return f"the re-ranker could not be loaded ({self.problem}); results are not re-ranked"
        return None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load the model in the background; returns once it is loaded or has failed."""
        task_status.started()
        try:
            await self._load()
        finally:
            self.settled.set()

    async def _load(self) -> None:
        if self.state == "disabled":
            return
        try:
            self._model = await anyio.to_thread.run_sync(
                load_cross_encoder, self.config, self._cache_dir, abandon_on_cancel=True
            )
            # A probe as long as max_tokens: a window longer than the model's fails here, not in a search.
            await anyio.to_thread.run_sync(self._score, "probe", ["probe " * self.config.max_tokens])
        # As with the embedder, every way loading can fail means the same here: search goes on without it.
        except Exception as exc:  # noqa: BLE001
            self._model = None
            self.state, self.problem = "failed", f"{type(exc).__name__}: {exc}"
            log.error(
                "re-ranker %s could not be loaded: %s; search is not re-ranked", self.name, self.problem
            )
            return
        self.state = "ready"
        log.info("re-ranker %s ready", self.name)

    def _score(self, query: str, documents: list[str]) -> list[float]:
        return [float(score) for score in self._model.rerank(query, documents, batch_size=len(documents))]

    async def scores(self, query: str, documents: list[str]) -> list[float]:
        """The cross-encoder's score of each document for the query (higher is better)."""
        if self.state != "ready":
            raise Unavailable(self.unavailable_reason() or "the re-ranker is off")
        try:
            # Not abandoned on cancel: the limiter must stay held while the model runs (a short, bounded call).
            return await anyio.to_thread.run_sync(self._score, query, documents, limiter=self._one_at_a_time)
        except Exception as exc:  # onnxruntime fails in its own ways; the search goes on without it
            log.warning("re-ranking failed: %s: %s", type(exc).__name__, exc)
            raise Unavailable(f"re-ranking failed ({type(exc).__name__}); results are not re-ranked") from exc
