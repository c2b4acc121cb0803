"""The vector index on PostgreSQL: a pgvector table with an HNSW index, and the same in-memory cache.

The table holds the same (seq, cube id, unit vector) rows as sqlite-vec's on the embedded store, made for
one model and rebuilt when it changes (daemon/vectors.py says how). With the in-memory cache (the default)
searches are exact BLAS products over the cache, filled from the table at attach and kept true to it when
other daemons write (`catch_up`, woken by NOTIFY through daemon/pg_bus.py). Without it, the database
answers: an HNSW index over cosine distance with pgvector's iterative scan in strict order, so a search
filtered to the reader's cubes keeps scanning until it has its k rows instead of returning the few that
survived the filter (`hnsw.iterative_scan`, set on every connection by daemon/pg_store.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio
import numpy as np

from daemon.store import Connection, placeholders
from daemon.vector_cache import VectorCache
from daemon.vectors import VectorIndex

log = logging.getLogger(__name__)

_FILL_CHUNK = 4096
VECTORS_CHANNEL = "memos_vectors"  # NOTIFY: new vectors committed (daemon/pg_bus.py listens)


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form of a vector (9 significant digits: a float32 read back unchanged)."""
    return "[" + ",".join(f"{value:.9g}" for value in vector.astype(np.float32).tolist()) + "]"


def from_binary(blob: bytes) -> np.ndarray:
    """A vector from pgvector's binary form (`vector_send`: two int16 headers, then big-endian float4)."""
    return np.frombuffer(blob, dtype=">f4", offset=4).astype(np.float32)


class PgVectorIndex(VectorIndex):
    """`VectorIndex` with its table, writes and database searches in pgvector's terms, and a cache that
    follows the table when other daemons write to it."""

    _followed = 0  # the highest `changed` the cache holds

    async def attach(self, *, read_only: bool = False) -> None:
        model, dims = self._embedder.model_name, self._embedder.dims
        assert dims is not None
        if read_only:
            async with self._store.read() as conn:
                meta = {
                    row["key"]: row["value"]
                    for row in await conn.rows("SELECT key, value FROM meta WHERE key LIKE 'embedding_%'")
                }
                self.ready = meta.get("embedding_model") == model and meta.get("embedding_dims") == str(dims)
                if self.ready:
                    await self._resume_reembedding(conn, meta)
            return
        async with self._store.write() as conn:
            rows = {
                row["key"]: row["value"]
                for row in await conn.rows("SELECT key, value FROM meta WHERE key LIKE 'embedding_%'")
            }
            if rows.get("embedding_model") == model and rows.get("embedding_dims") == str(dims):
                await self._resume_reembedding(conn, rows)
            if rows.get("embedding_model") != model or rows.get("embedding_dims") != str(dims):
                await conn.execute("DROP TABLE IF EXISTS memory_vectors")
                # dims is an int from the model, not caller text.
                # `changed` orders the writes: every daemon's cache follows the table by it (`catch_up`).
                await conn.execute("CREATE SEQUENCE IF NOT EXISTS memory_vectors_changes")
                await conn.execute(
                    "CREATE TABLE memory_vectors (rowid BIGINT PRIMARY KEY, cube_id BIGINT NOT NULL,"
                    f" embedding vector({int(dims)}) NOT NULL, changed BIGINT NOT NULL)"
                )
                await conn.execute("CREATE INDEX memory_vectors_by_change ON memory_vectors (changed)")
                await conn.execute(
                    "CREATE INDEX memory_vectors_hnsw ON memory_vectors USING hnsw (embedding vector_cosine_ops)"
                )
                await conn.execute("CREATE INDEX memory_vectors_by_cube ON memory_vectors (cube_id)")
                await conn.execute("UPDATE memories SET embedded = 0 WHERE embedded = 1")
                await conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('embedding_model', ?), ('embedding_dims', ?)",
                    (model, str(dims)),
                )
                if rows:
                    await self._begin_reembedding(conn, rows.get("embedding_model", ""))
        if self._use_cache:
            self._cache = VectorCache(dims, precision=self._precision)
            await self._fill(self._cache)
            log.info("vector cache holds %d vectors", len(self._cache))
        self.ready = True
        self.attached.set()
        self.wake()

    async def _fill(self, cache: VectorCache) -> None:
        """Load every stored vector into the cache, a chunk at a time in key order."""
        async with self._store.read() as conn:
            # Read first: rows changed during the fill are read again by the next catch_up (harmless).
            self._followed = await conn.value("SELECT coalesce(max(changed), 0) FROM memory_vectors")
            cache.reserve(await conn.value("SELECT count(*) FROM memory_vectors"))
            after = -1
            while True:
                rows = await conn.rows(
                    "SELECT rowid AS seq, cube_id, vector_send(embedding) AS blob FROM memory_vectors"
                    " WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (after, _FILL_CHUNK),
                )
                if not rows:
                    return
                chunk = [(int(r["seq"]), int(r["cube_id"]), from_binary(r["blob"])) for r in rows]
                await anyio.to_thread.run_sync(cache.upsert, chunk)
                after = chunk[-1][0]

    async def catch_up(self) -> int:
        """Bring the cache up to the table: the vectors other daemons on the database wrote (and this one's
        own again) since the last look, in the order they committed. Writes are serial across the daemons
        (daemon/pg_store.py), so `changed` grows in commit order and no write is passed over. Returns how
        many vectors were read."""
        cache = self._cache
        if cache is None or not self.ready:
            return 0
        read = 0
        while True:
            async with self._store.read() as conn:
                rows = await conn.rows(
                    "SELECT rowid AS seq, cube_id, vector_send(embedding) AS blob, changed FROM memory_vectors"
                    " WHERE changed > ? ORDER BY changed LIMIT ?",
                    (self._followed, _FILL_CHUNK),
                )
            if not rows:
                return read
            cache.upsert((int(r["seq"]), int(r["cube_id"]), from_binary(r["blob"])) for r in rows)
            self._followed = int(rows[-1]["changed"])
            read += len(rows)

    async def put(
        self, conn: Connection, rows: Sequence[tuple[int, int, np.ndarray]], *, mark: bool = True
    ) -> None:
        """Store (seq, cube_id, vector) rows and mark the memories embedded (unless the caller inserted
        them marked: `mark=False`), inside the caller's write."""
        await conn.execute_many(
            "INSERT OR REPLACE INTO memory_vectors (rowid, cube_id, embedding, changed)"
            " VALUES (?, ?, ?::vector, nextval('memory_vectors_changes'))",
            [(seq, cube_id, vector_literal(vector)) for seq, cube_id, vector in rows],
        )
        if mark:
            seqs = [seq for seq, _, _ in rows]
            await conn.execute(
                f"UPDATE memories SET embedded = 1 WHERE seq IN ({placeholders(len(seqs))})", seqs
            )
        await conn.execute(f"SELECT pg_notify('{VECTORS_CHANNEL}', '')")  # delivered at COMMIT
        if self._cache is not None:
            cache = self._cache
            conn.after_commit(lambda: cache.upsert(rows))

    async def _scanned_nearest(
        self, conn: Connection, vector: np.ndarray, cube_ids: Sequence[int], k: int
    ) -> list[tuple[int, float]]:
        """pgvector's KNN (HNSW, iterative scan on every connection)."""
        rows = await conn.rows(
            "SELECT rowid AS seq, embedding <=> ?::vector AS distance FROM memory_vectors"
            f" WHERE cube_id IN ({placeholders(len(cube_ids))}) ORDER BY distance LIMIT ?",
            [vector_literal(vector), *cube_ids, k],
        )
        return [(int(row["seq"]), 1.0 - float(row["distance"])) for row in rows]

    _EMBEDDING = "vector_send(v.embedding)"

    @staticmethod
    def _rows(block: np.ndarray) -> np.ndarray:
        """The float32 vectors of pgvector's binary forms (as `from_binary` reads one), swapped to native
        order; the first 4 bytes of each are its two int16 headers, the first float4's place."""
        words = block.view(np.uint32).byteswap()  # a copy: the block is a view of read-only bytes
        return words.view(np.float32).reshape(len(block), -1)[:, 1:]

    async def _uncached_similarities(
        self, conn: Connection, vector: np.ndarray, seqs: Sequence[int]
    ) -> dict[int, float]:
        rows = await conn.rows(
            "SELECT rowid AS seq, 1 - (embedding <=> ?::vector) AS similarity FROM memory_vectors"
            f" WHERE rowid IN ({placeholders(len(seqs))})",
            [vector_literal(vector), *seqs],
        )
        return {int(row["seq"]): float(row["similarity"]) for row in rows}
