"""An in-memory copy of the vectors for exact nearest-neighbour search with BLAS.

sqlite-vec's brute-force KNN scans 100k 384-dimension vectors in ~70 ms on this class of machine; one matrix
product over the same float32 matrix takes ~7 ms. The database stays the truth: the cache is filled from it
at start and changed only after a write commits. It costs 4 bytes per dimension per memory (1.5 KiB with
MiniLM: ~150 MiB at 100k memories).

The vectors live in blocks of a fixed number of rows, allocated as rows arrive: adding never copies
them into a larger array, so memory grows by one block at a time and has no peak of two copies.

Searches run on worker threads while the event loop appends, so the tuple of blocks and the id arrays are
replaced, never resized in place, and a search reads one consistent snapshot: rows past its `used` count
may be written meanwhile, rows before it are only ever retired (their cube set to -1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

# blocks of vectors, seqs, cube ids, rows in use
_Snapshot = tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray, int]
_RETIRED = -1  # cube id of a row whose memory got a newer vector
BLOCK_ROWS = 8192  # 12 MiB of float32 per block with MiniLM's 384 dimensions


class VectorCache:
    def __init__(self, dims: int, *, block_rows: int = BLOCK_ROWS) -> None:
        self.dims = dims
        self.block_rows = block_rows
        self._snapshot: _Snapshot = ((), np.empty(1024, np.int64), np.empty(1024, np.int64), 0)
        self._row_of: dict[int, int] = {}
        self._retired = 0
        self._cube_rows: Counter[int] = Counter()  # live rows per cube
        self._live_cubes: frozenset[int] = frozenset()  # replaced, never changed: searches read it on threads

    def __len__(self) -> int:
        return len(self._row_of)

    @property
    def vector_bytes(self) -> int:
        """Memory held by the vectors' blocks (at most one block more than the rows need)."""
        return sum(block.nbytes for block in self._snapshot[0])

    def reserve(self, rows: int) -> None:
        """Make room for `rows` seqs and cube ids before filling the cache (the vectors' blocks come as
        rows arrive)."""
        blocks, seqs, cubes, used = self._snapshot
        if rows > len(seqs):
            self._snapshot = (blocks, _grown(seqs, rows), _grown(cubes, rows), used)

    def upsert(self, rows: Iterable[tuple[int, int, np.ndarray]]) -> None:
        """Add (seq, cube id, unit vector) rows; a seq seen before gets its new vector."""
        rows = list(rows)
        blocks, seqs, cubes, used = self._snapshot
        if used + len(rows) > len(seqs):
            capacity = max(2 * len(seqs), used + len(rows))  # ids only: 16 bytes a row
            seqs, cubes = _grown(seqs, capacity), _grown(cubes, capacity)
        needed = -(-(used + len(rows)) // self.block_rows)
        if needed > len(blocks):
            blocks = blocks + tuple(
                np.empty((self.block_rows, self.dims), np.float32) for _ in range(needed - len(blocks))
            )
        size = self.block_rows
        for seq, cube_id, vector in rows:
            old = self._row_of.get(seq)
            if old is not None:
                self._cube_rows[int(cubes[old])] -= 1
                cubes[old] = _RETIRED
                self._retired += 1
            blocks[used // size][used % size] = vector
            seqs[used], cubes[used] = seq, cube_id
            self._cube_rows[cube_id] += 1
            self._row_of[seq] = used
            used += 1
        self._snapshot = (blocks, seqs, cubes, used)
        self._live_cubes = frozenset(cube for cube, n in self._cube_rows.items() if n)
        if self._retired > 1024 and self._retired > used // 4:
            self._compact()

    def discard(self, seqs: Iterable[int]) -> None:
        _, _, cubes, _ = self._snapshot
        for seq in seqs:
            row = self._row_of.pop(seq, None)
            if row is not None:
                self._cube_rows[int(cubes[row])] -= 1
                cubes[row] = _RETIRED
                self._retired += 1
        self._live_cubes = frozenset(cube for cube, n in self._cube_rows.items() if n)

    def _compact(self) -> None:
        """Drop retired rows: the live ones copied into new blocks, a block at a time."""
        blocks, seqs, cubes, used = self._snapshot
        keep = np.flatnonzero(cubes[:used] != _RETIRED)
        fresh: list[np.ndarray] = []
        size = self.block_rows
        for start in range(0, len(keep), size):
            rows = keep[start : start + size]
            block = np.empty((size, self.dims), np.float32)
            block[: len(rows)] = _gathered(blocks, size, rows)
            fresh.append(block)
        self._snapshot = (tuple(fresh), seqs[keep].copy(), cubes[keep].copy(), len(keep))
        self._row_of = {int(seq): row for row, seq in enumerate(self._snapshot[1][: len(keep)])}
        self._retired = 0
        self._cube_rows = Counter({cube: n for cube, n in self._cube_rows.items() if n})

    def nearest(self, query: np.ndarray, cube_ids: Sequence[int], k: int) -> list[tuple[int, float]]:
        """(seq, cosine similarity) of the k most similar vectors in the given cubes, best first.
        Blocking (a matrix product): call it on a worker thread."""
        blocks, seqs, cubes, used = self._snapshot
        if used == 0 or k <= 0:
            return []
        query = query.astype(np.float32)
        similarity = np.empty(used, np.float32)
        size = self.block_rows
        for index, block in enumerate(blocks):
            start = index * size
            if start >= used:
                break
            end = min(start + size, used)
            np.dot(block[: end - start], query, out=similarity[start:end])
        if self._live_cubes <= set(cube_ids):
            # Every live row is readable (one user's cubes, the usual case): no mask over every row's cube.
            if self._retired:
                similarity[cubes[:used] == _RETIRED] = -np.inf
            candidates = np.argpartition(-similarity, k - 1)[:k] if used > k else np.arange(used)
            candidates = candidates[similarity[candidates] > -np.inf]
        else:
            candidates = np.flatnonzero(np.isin(cubes[:used], np.asarray(cube_ids, dtype=np.int64)))
            if len(candidates) > k:
                top = np.argpartition(-similarity[candidates], k - 1)[:k]
                candidates = candidates[top]
        order = candidates[np.argsort(-similarity[candidates], kind="stable")]
        return [(int(seqs[row]), float(similarity[row])) for row in order]

    def similarities(self, query: np.ndarray, seqs: Iterable[int]) -> dict[int, float]:
        """Cosine similarity of `query` to each of `seqs` that has a vector. Hundreds of dot products, a few
        thousand with whole episodes read (context, episode): about 1 ms for 5,000 (measured), cheap enough
        for the event loop, where the cache is also changed, so rows cannot move meanwhile."""
        blocks = self._snapshot[0]
        pairs = [(seq, self._row_of[seq]) for seq in seqs if seq in self._row_of]
        if not pairs:
            return {}
        rows = np.fromiter((row for _, row in pairs), np.int64, len(pairs))
        values = _gathered(blocks, self.block_rows, rows) @ query.astype(np.float32)
        return {seq: float(value) for (seq, _), value in zip(pairs, values, strict=True)}


def _gathered(blocks: tuple[np.ndarray, ...], size: int, rows: np.ndarray) -> np.ndarray:
    """The vectors of `rows` (a row's block is row // size), in the order given."""
    out = np.empty((len(rows), blocks[0].shape[1] if blocks else 0), np.float32)
    which, offset = np.divmod(rows, size)
    for index in np.unique(which):
        mask = which == index
        out[mask] = blocks[index][offset[mask]]
    return out


def _grown(array: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.empty((capacity, *array.shape[1:]), array.dtype)
    grown[: len(array)] = array
    return grown
