"""The vector index: a table of unit vectors (float32 blobs, keyed by the memory's seq) in the same file.

A plain table, not a sqlite-vec `vec0` one: the int8 cache re-scores a few hundred rows a search by key, which
takes ~3 us a row here and ~170 us in `vec0` (each lookup walks its chunk's 1.5 MB blob); an older file's
`vec0` table is copied into one at attach (~2 s of CPU at 100k). Without the cache, sqlite-vec's scalar
`vec_distance_cosine` scans it (~130 ms at 100k, `vec0`'s KNN took ~80).

The table is made for one model. When the configured model changes (or its dimension), the old vectors are
dropped and every memory is marked for re-embedding; `VectorIndex.backfill` embeds what is missing in the
background, so memories written while the model was loading or unavailable become searchable by meaning.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import numpy as np
from anyio.abc import TaskStatus

from daemon import sqlite_driver
from daemon.embedder import Embedder
from daemon.errors import Unavailable
from daemon.filters import passing
from daemon.heap import release_freed_memory
from daemon.packed_columns import Kind
from daemon.reader_threads import blocking, on_reader_thread
from daemon.rows import read_row_pages, read_rows
from daemon.scheduler import JobClass, Scheduler
from daemon.store import Connection, Store, placeholders
from daemon.store_errors import translated
from daemon.supervision import retrying
from daemon.vector_cache import Precision, VectorCache

log = logging.getLogger(__name__)


class _Scored(NamedTuple):
    """Stored vectors' seqs, their similarity to a query, and (when asked) whether each memory passes."""

    seqs: np.ndarray  # int64
    similarity: np.ndarray  # float32
    passes: np.ndarray | None  # bool

    def by_seq(self) -> dict[int, float]:
        """Each seq's similarity."""
        return dict(zip(self.seqs.tolist(), self.similarity.tolist(), strict=True))

    def joined(self, other: _Scored) -> _Scored:
        """These rows, then `other`'s (both read with the filter, or both without)."""
        passes = None
        if self.passes is not None and other.passes is not None:
            passes = np.concatenate([self.passes, other.passes])
        return _Scored(
            np.concatenate([self.seqs, other.seqs]),
            np.concatenate([self.similarity, other.similarity]),
            passes,
        )


_BACKFILL_BATCH = 256
_RECHECK_S = 5.0


class VectorIndex:
    def __init__(
        self, store: Store, embedder: Embedder, *, use_cache: bool = True, precision: Precision = "float32"
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._use_cache = use_cache
        self._precision: Precision = precision
        self.scheduler: Scheduler | None = None  # set by the daemon: backfill then runs as background jobs
        self._cache: VectorCache | None = None
        self.ready = False  # the table matches the loaded model
        # Memories left to embed again after a change of model (None: no such change under way). Until they
        # are done, searches are lexical: vectors for only some memories would skew the ranking.
        self.reembedding: int | None = None
        self._previous_model = ""
        self.attached = anyio.Event()  # set when `ready` becomes true
        self._wake = anyio.Event()

    async def attach(self, *, read_only: bool = False) -> None:
        """Make the table match the loaded model; called once the embedder is ready. `read_only` (a CLI
        command beside the daemon) only uses the table if it already matches: rebuilding is the daemon's."""
        model, dims = self._embedder.model_name, self._embedder.dims
        assert dims is not None
        if read_only:
            async with self._store.read() as conn:
                meta = await _embedding_meta(conn)
                self.ready = meta.get("embedding_model") == model and meta.get("embedding_dims") == str(dims)
                if self.ready:
                    await self._resume_reembedding(conn, meta)
            return
        async with self._store.write() as conn:
            rows = await _embedding_meta(conn)
            if rows.get("embedding_model") == model and rows.get("embedding_dims") == str(dims):
                await self._resume_reembedding(conn, rows)
            if rows.get("embedding_model") != model or rows.get("embedding_dims") != str(dims):
                await conn.execute("DROP TABLE IF EXISTS memory_vectors")
                await conn.execute(CREATE_VECTOR_TABLE)
                await conn.execute("UPDATE memories SET embedded = 0 WHERE embedded = 1")
                await conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('embedding_model', ?), ('embedding_dims', ?)",
                    (model, str(dims)),
                )
                if rows:
                    await self._begin_reembedding(conn, rows.get("embedding_model", ""))
            elif "vec0" in str(
                await conn.value("SELECT sql FROM sqlite_schema WHERE name = 'memory_vectors'")
            ):
                log.info("copying the vectors out of sqlite-vec's vec0 table into a plain one")
                await conn.execute(CREATE_VECTOR_TABLE.replace("memory_vectors", "memory_vectors_plain"))
                await conn.execute(
                    "INSERT INTO memory_vectors_plain (rowid, cube_id, embedding)"
                    " SELECT rowid, cube_id, embedding FROM memory_vectors ORDER BY rowid"
                )
                await conn.execute("DROP TABLE memory_vectors")
                await conn.execute("ALTER TABLE memory_vectors_plain RENAME TO memory_vectors")
        if self._use_cache:
            self._cache = VectorCache(dims, precision=self._precision)
            await anyio.to_thread.run_sync(_fill, self._cache, self._store.path)
            log.info("vector cache holds %d vectors", len(self._cache))
        self.ready = True
        self.attached.set()
        self.wake()

    async def _begin_reembedding(self, conn: Connection, previous: str) -> None:
        """After a change of model (or of its precision), inside the write that dropped the old vectors. The
        meta table remembers it until every memory is done, so a restart meanwhile goes on saying so."""
        left = int(await conn.value("SELECT count(*) FROM memories WHERE embedded = 0") or 0)
        if left:
            await conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('embedding_replaced', ?)", (previous,)
            )
            self.reembedding, self._previous_model = left, previous
            log.warning(
                "the embedding model changed from %s to %s: embedding %d memories again in the background;"
                " search is lexical until they are done",
                previous, self._embedder.model_name, left,
            )  # fmt: skip

    async def _resume_reembedding(self, conn: Connection, meta: dict[str, str]) -> None:
        """A re-embedding begun by an earlier start (or by the daemon beside a CLI command) and not done."""
        previous = meta.get("embedding_replaced")
        if previous is not None:
            self._previous_model = previous
            self.reembedding = int(await conn.value("SELECT count(*) FROM memories WHERE embedded = 0") or 0)

    async def _background(self, work: Callable[[], Awaitable[bool]]) -> bool:
        """Run one unit of backfill as a background job on the scheduler (directly without one)."""
        if self.scheduler is None:
            return await work()
        result: bool = await self.scheduler.submit(("backfill",), JobClass.BACKGROUND, work).wait()
        return result

    def wake(self) -> None:
        """Tell the backfill loop there may be unembedded memories."""
        self._wake.set()

    @property
    def usable(self) -> bool:
        return self.ready and self._embedder.state == "ready" and self.reembedding is None

    async def embed(self, texts: list[str]) -> np.ndarray | None:
        """Vectors for `texts`, or None when the index cannot take them now (the backfill will)."""
        if not self.usable:
            return None
        try:
            return await self._embedder.embed(texts)
        except Unavailable as exc:
            log.warning("embedding deferred to backfill: %s", exc)
            return None

    async def put(
        self, conn: Connection, rows: Sequence[tuple[int, int, np.ndarray]], *, mark: bool = True
    ) -> None:
        """Store (seq, cube_id, vector) rows in place of any old ones, inside the caller's write, and mark
        the memories embedded (`mark=False`: the caller inserted them marked already)."""
        await conn.execute_many(
            "INSERT OR REPLACE INTO memory_vectors (rowid, cube_id, embedding) VALUES (?, ?, ?)",
            [(seq, cube_id, vector.astype(np.float32).tobytes()) for seq, cube_id, vector in rows],
        )
        if mark:
            seqs = [seq for seq, _, _ in rows]
            await conn.execute(
                f"UPDATE memories SET embedded = 1 WHERE seq IN ({placeholders(len(seqs))})", seqs
            )
        if self._cache is not None:
            cache = self._cache
            conn.after_commit(lambda: cache.upsert(rows))

    async def nearest(
        self, conn: Connection, vector: np.ndarray, cube_ids: Sequence[int], k: int
    ) -> list[tuple[int, float]]:
        """(seq, cosine similarity) of the k nearest vectors in the given cubes, best first: exact either
        way, from the in-memory cache (BLAS; int8's shortlist re-scored from the table) or from the table
        scanned by sqlite-vec."""
        if self._cache is not None:
            ranked, _ = await self._cached_nearest(conn, vector, cube_ids, k, None)
            return ranked
        return await self._scanned_nearest(conn, vector, cube_ids, k)

    async def nearest_passing(
        self,
        conn: Connection,
        vector: np.ndarray,
        cube_ids: Sequence[int],
        k: int,
        where: tuple[str, Sequence[Any]],
        wanted: int,
    ) -> list[tuple[int, float]]:
        """Of the k nearest (ranked as `nearest` ranks them), the first `wanted` whose memory passes `where`
        (a predicate over `memories m` starting with AND, and its parameters), best first. With the int8
        cache the statement that re-scores the shortlist reads with each vector whether its memory passes;
        otherwise the memories are looked up after (`filters.passing`)."""
        passed: set[int] | None = None
        if self._cache is not None and not self._cache.exact:
            ranked, passed = await self._cached_nearest(conn, vector, cube_ids, k, where, wanted)
        else:
            ranked = await self.nearest(conn, vector, cube_ids, k)
        if passed is None:
            passed = set(await passing(conn, [seq for seq, _ in ranked], *where, wanted))
        return [(seq, similarity) for seq, similarity in ranked if seq in passed][:wanted]

    async def _scanned_nearest(
        self, conn: Connection, vector: np.ndarray, cube_ids: Sequence[int], k: int
    ) -> list[tuple[int, float]]:
        """`nearest` without the cache: the store's own search (each store's SQL)."""
        rows = await conn.rows(
            "SELECT rowid AS seq, vec_distance_cosine(embedding, ?) AS distance FROM memory_vectors"
            f" WHERE cube_id IN ({placeholders(len(cube_ids))}) ORDER BY distance, seq LIMIT ?",
            [vector.astype(np.float32).tobytes(), *cube_ids, k],
        )
        return [(int(row["seq"]), 1.0 - float(row["distance"])) for row in rows]

    async def _cached_nearest(
        self,
        conn: Connection,
        vector: np.ndarray,
        cube_ids: Sequence[int],
        k: int,
        where: tuple[str, Sequence[Any]] | None,
        wanted: int | None = None,
    ) -> tuple[list[tuple[int, float]], set[int] | None]:
        """The k nearest from the cache, and (int8 with `where`, a short shortlist) those of them that pass
        it; None when nothing was looked up. `wanted` (with `where`): the caller keeps only the first
        `wanted` that pass, so when the nearest `wanted` all pass, those alone are returned."""
        cache = self._cache
        assert cache is not None
        found, inner = await blocking(cache.nearest_within, vector, cube_ids, k, wanted or k)
        if cache.exact or not found:
            return found, None
        # int8: the shortlist holds the true top k; rank it by the stored float32 vectors (ties: lower seq
        # first). Rows the reader cannot see yet (the cache runs ahead of an older read transaction) drop out.
        # The filter is read with the vectors (one statement, not two) unless the shortlist is long (a near tie
        # of many vectors): each row's memory costs ~3 us to look up on the reader's thread, so then only the
        # k ranked are looked up after (`nearest_passing`).
        if len(found) > _FOLD_FACTOR * k:
            where = None
        shortlist = [seq for seq, _ in found]
        if where is not None and wanted is not None and inner < len(found):
            # The shortlist for the nearest `wanted` first (about half the rows): when the reader sees all of
            # them and their exact top `wanted` all pass, those are what the whole shortlist's ranking and
            # filter would give.
            head = await self._stored_similarities(conn, vector, shortlist[:inner], where)
            order = np.lexsort((head.seqs, -head.similarity))[:wanted]
            assert head.passes is not None
            if len(head.seqs) == inner and len(order) == wanted and head.passes[order].all():
                ranked = list(zip(head.seqs[order].tolist(), head.similarity[order].tolist(), strict=True))
                return ranked, {seq for seq, _ in ranked}
            tail = await self._stored_similarities(conn, vector, shortlist[inner:], where)
            stored = head.joined(tail)
        else:
            stored = await self._stored_similarities(conn, vector, shortlist, where)
        order = np.lexsort((stored.seqs, -stored.similarity))[:k]
        seqs = stored.seqs[order]
        ranked = list(zip(seqs.tolist(), stored.similarity[order].tolist(), strict=True))
        if stored.passes is None:
            return ranked, None
        return ranked, set(seqs[stored.passes[order]].tolist())

    async def _stored_similarities(
        self,
        conn: Connection,
        vector: np.ndarray,
        seqs: Sequence[int],
        where: tuple[str, Sequence[Any]] | None = None,
    ) -> _Scored:
        """The similarity of `vector` to each of `seqs` that has a stored vector, and (given `where`) whether
        its memory passes it (False when the reader sees no such memory), read a chunk at a time."""
        seq_parts, similarity_parts = [np.empty(0, np.int64)], [np.empty(0, np.float32)]
        pass_parts = [np.empty(0, bool)]
        query = vector.astype(np.float32)
        for start in range(0, len(seqs), _READ_CHUNK):
            part = seqs[start : start + _READ_CHUNK]
            passes, join, params = "", "", []
            if where is not None:
                predicate, bound = where
                passes, params = f", (m.seq IS NOT NULL {predicate}) AS passes", list(bound)
                join = " LEFT JOIN memories m ON m.seq = v.rowid"
            kinds: dict[str, Kind] = {"seq": "value", "embedding": "blob"}
            if where is not None:
                kinds["passes"] = "value"
            found = await conn.packed_columns(
                f"SELECT v.rowid AS seq, {self._EMBEDDING} AS embedding{passes} FROM memory_vectors v{join}"
                f" WHERE v.rowid IN ({placeholders(len(part))})",
                [*params, *part],
                kinds,
            )
            if found.count:
                seq_parts.append(np.array(found.values["seq"], dtype=np.int64))
                similarity_parts.append(self._products(found.blobs["embedding"], found.count, query))
                if where is not None:
                    pass_parts.append(np.array(found.values["passes"], dtype=bool))
        return _Scored(
            np.concatenate(seq_parts),
            np.concatenate(similarity_parts),
            np.concatenate(pass_parts) if where is not None else None,
        )

    _EMBEDDING = "v.embedding"  # the stored vector's column as `_rows` reads it

    def _products(self, joined: bytes, count: int, query: np.ndarray) -> np.ndarray:
        """`query`'s product with each of `count` stored vectors, `joined` in one buffer as a packed read gives
        them (daemon/packed_columns.py: on SQLite one bytes object for the read, none a vector). A typical
        shortlist's buffer (~260 rows, 400 KiB) comes from the heap and is reused; only a read of more than
        ~680 rows passes the mmap threshold (daemon/heap.py) and is mapped for itself."""
        block = np.frombuffer(joined, dtype=f"S{len(joined) // count}")
        return self._rows(block) @ query

    @staticmethod
    def _rows(block: np.ndarray) -> np.ndarray:
        """The float32 vectors (one a row) of stored blobs viewed as a fixed-width bytes array."""
        return block.view(np.float32).reshape(len(block), -1)

    async def similarities(
        self, conn: Connection, vector: np.ndarray, seqs: Sequence[int]
    ) -> dict[int, float]:
        """Cosine similarity of `vector` to each of `seqs` that has a vector (for candidates found otherwise)."""
        if not seqs:
            return {}
        if self._cache is not None and self._cache.exact and not on_reader_thread():
            return self._cache.similarities(vector, seqs)
        if self._cache is not None:  # int8; or float32 on a reader's thread, where the cache's rows may move
            return (await self._stored_similarities(conn, vector, seqs)).by_seq()
        return await self._uncached_similarities(conn, vector, seqs)

    async def _uncached_similarities(
        self, conn: Connection, vector: np.ndarray, seqs: Sequence[int]
    ) -> dict[int, float]:
        """`similarities` without the cache (each store's SQL; here the stored vectors read by key)."""
        return (await self._stored_similarities(conn, vector, seqs)).by_seq()

    async def backfill(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Embed memories that have no vector yet, whenever woken; runs until cancelled."""
        task_status.started()
        await self._embedder.ready.wait()
        await retrying("preparing the vector index", self.attach)
        while True:
            # Other processes (memos import) write rows without vectors too: look now and then.
            with anyio.move_on_after(_RECHECK_S):
                await self._wake.wait()
            self._wake = anyio.Event()
            await retrying("embedding memories without vectors", self._backfill_all)

    async def _backfill_all(self) -> None:
        while await self._background(self._backfill_batch):
            pass

    async def _backfill_batch(self) -> bool:
        async with self._store.read() as conn:
            rows = await conn.rows(
                "SELECT seq, cube_id, content FROM memories WHERE embedded = 0 ORDER BY seq LIMIT ?",
                (_BACKFILL_BATCH,),
            )
        if not rows:
            await self._reembedded()
            return False
        vectors = await self._embedder.embed([row["content"] for row in rows])
        async with self._store.write() as conn:
            # Skip rows changed since they were read: their new text gets its own vector.
            current = {
                (row["seq"], row["content"])
                for row in await conn.rows(
                    f"SELECT seq, content FROM memories WHERE embedded = 0 AND seq IN ({placeholders(len(rows))})",
                    [row["seq"] for row in rows],
                )
            }
            todo = [
                (row["seq"], row["cube_id"], vec)
                for row, vec in zip(rows, vectors, strict=True)
                if (row["seq"], row["content"]) in current
            ]
            if todo:
                await self.put(conn, todo)
        log.info("backfill embedded %d memories", len(todo))
        if self.reembedding is not None:
            self.reembedding = max(self.reembedding - len(todo), 0)
        if len(rows) < _BACKFILL_BATCH:
            await self._reembedded()
            return False
        return True

    async def _reembedded(self) -> None:
        if self.reembedding is not None:
            async with self._store.write() as conn:
                await conn.execute("DELETE FROM meta WHERE key = 'embedding_replaced'")
            self.reembedding = None
            log.info("every memory has a vector of %s again: search is hybrid", self._embedder.model_name)

    def unavailable_reason(self) -> str:
        if self._embedder.state == "ready" and not self.ready:
            return "the vector index is being prepared; results are lexical for now"
        if self._embedder.state == "ready" and self.reembedding is not None:
            return (
                f"the embedding model changed (from {self._previous_model} to {self._embedder.model_name}):"
                f" memories are being embedded again, about {self.reembedding} left; results are lexical"
                " until then"
            )
        return self._embedder.unavailable_reason()


async def _embedding_meta(conn: Connection) -> dict[str, str]:
    """The model and dimension the stored vectors belong to (empty before the first model)."""
    rows = await conn.rows("SELECT key, value FROM meta WHERE key LIKE 'embedding_%'")
    return {row["key"]: row["value"] for row in rows}


_FILL_CHUNK = 4096
_READ_CHUNK = 2048  # vectors read by key in one statement
_FOLD_FACTOR = 2  # the filter is read with a shortlist of up to this many times k vectors (`_cached_nearest`)
# The vectors' table on SQLite (bench/seed.py writes one as the daemon makes it).
CREATE_VECTOR_TABLE = "CREATE TABLE memory_vectors (rowid INTEGER PRIMARY KEY, cube_id INTEGER NOT NULL, embedding BLOB NOT NULL)"


def _fill(cache: VectorCache, path: Path) -> None:
    """Load every stored vector into the cache (blocking: a worker thread, on its own connection, before
    searches use the cache). A chunk at a time: 100k rows read at once would hold their blobs beside the
    cache, twice its size, and leave the heap that large."""
    with translated(path):
        conn = sqlite_driver.connect(str(path), read_only=True)
        try:
            cache.reserve(read_rows(conn, "SELECT count(*) AS n FROM memory_vectors")[0]["n"])
            for chunk in read_row_pages(
                conn, "SELECT rowid AS seq, cube_id, embedding FROM memory_vectors", page=_FILL_CHUNK
            ):
                cache.upsert(
                    (int(row["seq"]), int(row["cube_id"]), np.frombuffer(row["embedding"], dtype=np.float32))
                    for row in chunk
                )
        finally:
            conn.close()
    release_freed_memory()  # the pages of rows read on this thread
