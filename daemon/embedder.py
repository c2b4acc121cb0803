"""Text embeddings with fastembed (ONNX, no torch), computed off the event loop in batches.

`Embedder.run` is a service owned by the daemon's task group. It loads the model on a worker thread (the
daemon serves lexical search meanwhile), then serves `embed()` calls: requests that arrive while a batch is
being computed are gathered into the next one, so many concurrent writers cost a few model calls, not many.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any, Literal

import anyio
import numpy as np
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon.config import NO_MODEL, EmbedderConfig
from daemon.cores import usable_cores
from daemon.errors import Unavailable
from daemon.heap import release_freed_memory
from daemon.quantized import open_int8
from daemon.reader_threads import on_reader_thread

log = logging.getLogger(__name__)

State = Literal["disabled", "loading", "ready", "failed"]
_QUEUE_LIMIT = 256  # pending embed requests before callers wait
_LANE_TEXTS = 8  # texts a lane must have before the int8 model's one-text calls are split over the cores
_TRIM_AFTER_TOKENS = (
    2048  # a request this large (a batch, not a question) leaves freed memory worth handing back
)


class _Request:
    __slots__ = ("done", "error", "texts", "vectors")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.vectors: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = anyio.Event()


def load_model(config: EmbedderConfig, cache_dir: Path, *, local_only: bool = False) -> Any:
    """Load the fastembed model (blocking: call on a worker thread); `local_only` never downloads it."""
    from fastembed import TextEmbedding  # imported here: it is slow to import and unused without a model

    # No memory arena: onnxruntime's keeps the largest batch's working memory for good (gigabytes after a
    # batch of long texts); without it the memory is returned after each call, at no measured cost.
    kwargs: dict[str, Any] = {
        "cache_dir": str(cache_dir),
        "threads": config.threads,
        "enable_cpu_mem_arena": False,
    }
    if local_only:
        kwargs["local_files_only"] = True
    if config.model_path:
        if not Path(config.model_path, "model.onnx").is_file():
            raise FileNotFoundError(f"[embedder] model_path {config.model_path} has no model.onnx")
        kwargs["specific_model_path"] = config.model_path
    model = TextEmbedding(config.model, **kwargs)
    read_at_most(model, config.max_tokens)
    quantized_dir = None
    if config.precision == "int8":
        quantized_dir = Path(config.quantized_dir or cache_dir.parent / "quantized")
    without_spinning(model, quantized_dir)
    return model


def without_spinning(model: Any, quantized_dir: Path | None = None) -> None:
    """Rebuild a fastembed model's onnxruntime session so its threads sleep between calls; with
    `quantized_dir`, the new session runs the model's int8 copy kept there (made on first use).

    By default onnxruntime's pool threads spin for a while after each call, waiting for more work: one
    question embedded alone then costs 14 ms of CPU instead of 8, and a batch 10 ms per text instead of 6
    (measured here on 2 cores), and the spinning competes with the SQLite and KNN work of the same search.
    fastembed exposes no such option, so the session is made again with the same options plus this one.
    """
    owner: Any = getattr(model, "model", None)
    session: Any = getattr(owner, "model", None)
    path = getattr(session, "_model_path", None)
    if session is None or path is None:
        if quantized_dir is not None:  # never a float model under the int8 model's name
            raise RuntimeError("fastembed's session does not say which ONNX file it runs: cannot quantize it")
        return
    import onnxruntime

    options, providers = session.get_session_options(), session.get_providers()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")

    def session_of(file: Path) -> Any:
        return onnxruntime.InferenceSession(str(file), sess_options=options, providers=providers)

    owner.model = session = None  # the first session gone before the second is made: no peak of two
    release_freed_memory()
    source = Path(path)
    owner.model = (
        session_of(source) if quantized_dir is None else open_int8(source, quantized_dir, session_of)
    )
    release_freed_memory()  # what loading it (or quantizing it) needed only for a moment


def read_at_most(model: Any, max_tokens: int) -> None:
    """Cut a fastembed model's input at `max_tokens` (fastembed cuts at the tokenizer's own maximum)."""
    tokenizer = getattr(getattr(model, "model", None), "tokenizer", None)
    if tokenizer is not None:
        tokenizer.enable_truncation(max_length=max_tokens)


class Embedder:
    def __init__(self, config: EmbedderConfig, cache_dir: Path, *, local_only: bool = False) -> None:
        """`local_only`: use the model only if it is already on disk (a CLI command must not download it)."""
        self.config = config
        self._cache_dir = cache_dir
        self._local_only = local_only
        self._model: Any = None
        self.state: State = "disabled" if config.model == NO_MODEL else "loading"
        self.problem: str | None = None
        self.dims: int | None = None
        self.ready = anyio.Event()
        self.settled = anyio.Event()  # set once the model is ready, has failed, or is off
        if self.state == "disabled":
            self.settled.set()
        self._send: MemoryObjectSendStream[_Request] | None = None
        self._counter: Any = None  # a tokenizer for counting, made on first use
        self._measure: Any = None  # a tokenizer for batching by length, made on first use

    @property
    def model_name(self) -> str:
        """The model as the stored vectors and `memos status` name it (with its precision if not float32)."""
        return self.config.identity

    def unavailable_reason(self) -> str:
        if self.state == "disabled":
            return 'semantic search is off ([embedder] model = "none"); results are lexical'
        if self.state == "loading":
            return "the embedding model is still loading; results are lexical for now"
        if self._local_only:
            return (
                f"the embedding model is not available on this machine ({self.problem}); results are"
                " lexical (memosd downloads it on its first start, or set [embedder] model_path)"
            )
        return f"the embedding model could not be loaded ({self.problem}); results are lexical"

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load the model, then serve batched requests until cancelled."""
        if self.state == "disabled":
            task_status.started()
            return
        send, receive = anyio.create_memory_object_stream[_Request](_QUEUE_LIMIT)
        try:
            with send, receive:
                self._send = send
                task_status.started()
                await self._load_and_serve(receive)
        finally:
            if self.state == "ready":
                self.state, self.problem = "failed", "the embedder stopped"

    async def _load_and_serve(self, receive: MemoryObjectReceiveStream[_Request]) -> None:
        try:
            self._model = await anyio.to_thread.run_sync(
                partial(load_model, self.config, self._cache_dir, local_only=self._local_only),
                abandon_on_cancel=True,
            )
            probe = await anyio.to_thread.run_sync(self._compute, ["dimension probe"])
        # Model loading fails in many ways (missing files, no network, a corrupt download, onnxruntime
        # errors); all of them mean the same thing to the daemon: keep serving, lexically, and say why.
        except Exception as exc:  # noqa: BLE001
            self.state, self.problem = "failed", f"{type(exc).__name__}: {exc}"
            self.settled.set()
            log.log(
                logging.INFO if self._local_only else logging.ERROR,  # a CLI command says so in its result
                "embedding model %s could not be loaded: %s. Search stays lexical; set [embedder] model_path"
                ' to a local ONNX copy of the model, or model = "none" to silence this.',
                self.model_name,
                self.problem,
            )
            self._fail_pending(receive)
            return
        self.dims = int(probe.shape[1])
        self.state = "ready"
        self.ready.set()
        self.settled.set()
        log.info("embedding model %s ready (%d dimensions)", self.model_name, self.dims)
        await self._serve(receive)

    async def _serve(self, receive: MemoryObjectReceiveStream[_Request]) -> None:
        async for first in receive:
            batch, size = [first], len(first.texts)
            while size < self.config.batch_size:
                try:
                    more = receive.receive_nowait()
                except anyio.WouldBlock:
                    break
                batch.append(more)
                size += len(more.texts)
            texts = [text for request in batch for text in request.texts]
            try:
                vectors = await self._computed(texts)
            except Exception as exc:  # noqa: BLE001 - handed to each waiting caller, not swallowed
                for request in batch:
                    request.error = exc
                    request.done.set()
                continue
            offset = 0
            for request in batch:
                request.vectors = vectors[offset : offset + len(request.texts)]
                offset += len(request.texts)
                request.done.set()

    def _fail_pending(self, receive: MemoryObjectReceiveStream[_Request]) -> None:
        while True:
            try:
                request = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            request.error = Unavailable(self.unavailable_reason())
            request.done.set()

    async def _computed(self, texts: list[str]) -> np.ndarray:
        """`_compute` on worker threads. The int8 model embeds one text a call, so a batch's texts are dealt
        out to as many lanes as cores (or `[embedder] threads`), each on its own thread: one session runs
        calls at once, every text's vector is the same either way, and a batch of 500 short notes took
        0.79 s instead of 1.41 (with less CPU). A query, or a few, stays on one thread."""
        lanes = 1
        if self.config.precision == "int8":
            lanes = min(self.config.threads or usable_cores(), len(texts) // _LANE_TEXTS)
        if lanes <= 1:
            return await anyio.to_thread.run_sync(self._compute, texts, abandon_on_cancel=True)
        parts: dict[int, np.ndarray] = {}

        async def lane(index: int) -> None:
            dealt = texts[index::lanes]
            parts[index] = await anyio.to_thread.run_sync(self._compute, dealt, abandon_on_cancel=True)

        async with anyio.create_task_group() as tg:
            for index in range(lanes):
                tg.start_soon(lane, index)
        vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        for index, part in parts.items():
            vectors[index::lanes] = part
        return vectors

    def _compute(self, texts: list[str]) -> np.ndarray:
        # The model pads each batch to its longest text: batching texts of like length (longest first)
        # saves most of that work for a mix of short and long texts. A batch holds at most `batch_size`
        # texts and `batch_tokens` tokens (padding included), which bounds the model's working memory.
        # The int8 model takes one text a call: it quantizes activations with one scale per call, so in a
        # batch a text's vector would depend on the texts beside it (cosine to its own down to 0.965 on LME
        # turns); alone it is always the same, and costs less CPU (no padding; measured 23 vs 32 ms a turn).
        alone = self.config.precision == "int8"
        lengths = self._token_lengths(texts)
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        parts, start, tokens = [], 0, 0
        while start < len(order):
            longest = max(lengths[order[start]], 1)
            size = 1 if alone else max(1, min(self.config.batch_size, self.config.batch_tokens // longest))
            batch = [texts[i] for i in order[start : start + size]]
            parts.append(np.asarray(list(self._model.embed(batch, batch_size=len(batch))), dtype=np.float32))
            tokens += longest * len(batch)
            start += size
        if tokens >= _TRIM_AFTER_TOKENS:
            release_freed_memory()
        embedded = np.concatenate(parts)
        vectors = np.empty_like(embedded)
        vectors[order] = embedded
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def _token_lengths(self, texts: list[str]) -> list[int]:
        """Tokens the model will read of each text (after the cut at `max_tokens`, special tokens included)."""
        if self._measure is None:
            tokenizer = getattr(getattr(self._model, "model", None), "tokenizer", None)
            if tokenizer is None:
                return [min(len(text) // 4 + 2, self.config.max_tokens) for text in texts]
            from tokenizers import Tokenizer

            # A copy that cuts as the model's does but does not pad (padding makes every length the longest's).
            self._measure = Tokenizer.from_str(tokenizer.to_str())
            self._measure.no_padding()
        # One by one: encode_batch would wake the tokenizer's thread pool, which spins a while after each
        # call (CPU taken from searches for one query's few tokens).
        return [len(self._measure.encode(text).ids) for text in texts]

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` by the model's own tokenizer; about four characters a token without a model."""
        if self._counter is None and self.state == "ready":
            model_tokenizer = getattr(getattr(self._model, "model", None), "tokenizer", None)
            if model_tokenizer is not None:
                # A copy without truncation or padding: the model's own cuts text at its 256-token window.
                from tokenizers import Tokenizer

                self._counter = Tokenizer.from_str(model_tokenizer.to_str())
                self._counter.no_truncation()
                self._counter.no_padding()
        if self._counter is not None:
            return len(self._counter.encode(text, add_special_tokens=False).ids)
        return len(text) // 4 + 1

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length vectors for `texts`; Unavailable when the model is not (yet) loaded."""
        if self.state != "ready" or self._send is None:
            raise Unavailable(self.unavailable_reason())
        if on_reader_thread():  # a search's phrasings on its reader's thread: a few texts, made in place
            try:
                return self._compute(texts)
            except Exception as exc:  # as `_serve` hands a failure to its caller
                raise Unavailable(f"embedding failed: {exc}") from exc
        result = np.empty((0, self.dims or 0), dtype=np.float32)
        # Split huge requests so one caller cannot hold the model for long.
        step = max(self.config.batch_size, 1)
        parts = []
        for start in range(0, len(texts), step):
            request = _Request(texts[start : start + step])
            try:
                await self._send.send(request)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                raise Unavailable("the embedder has stopped: memosd is shutting down") from None
            await request.done.wait()
            if request.error is not None:
                raise Unavailable(f"embedding failed: {request.error}") from request.error
            assert request.vectors is not None
            parts.append(request.vectors)
        return np.concatenate(parts) if parts else result
