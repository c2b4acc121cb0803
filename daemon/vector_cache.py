"""An in-memory copy of the vectors for exact nearest-neighbour search with BLAS.

sqlite-vec's brute-force KNN scans 100k 384-dimension vectors in ~70 ms on this class of machine; one matrix
product over the same float32 matrix takes ~7 ms. The database stays the truth: the cache is filled from it
at start and changed only after a write commits. It costs 4 bytes per dimension per memory (1.5 KiB with
MiniLM: ~150 MiB at 100k memories).

Searches run on worker threads while the event loop appends, so the arrays are replaced, never resized in
place, and a search reads one consistent snapshot tuple.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

_Snapshot = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # vectors, seqs, cube ids, rows in use
_RETIRED = -1  # cube id of a row whose memory got a newer vector


class VectorCache:
    def __init__(self, dims: int) -> None:
        self.dims = dims
        self._snapshot: _Snapshot = (
            np.empty((1024, dims), np.float32), np.empty(1024, np.int64), np.empty(1024, np.int64), 0
        )  # fmt: skip
        self._row_of: dict[int, int] = {}
        self._retired = 0
        self._cube_rows: Counter[int] = Counter()  # live rows per cube
        self._live_cubes: frozenset[int] = frozenset()  # replaced, never changed: searches read it on threads

    def __len__(self) -> int:
        return len(self._row_of)

    def reserve(self, rows: int) -> None:
        """Make room for `rows` in all before filling the cache, so it is not copied as it grows."""
        vectors, seqs, cubes, used = self._snapshot
        if rows > len(seqs):
            self._snapshot = (_grown(vectors, rows), _grown(seqs, rows), _grown(cubes, rows), used)

    def upsert(self, rows: Iterable[tuple[int, int, np.ndarray]]) -> None:
        """Add (seq, cube id, unit vector) rows; a seq seen before gets its new vector."""
        rows = list(rows)
        vectors, seqs, cubes, used = self._snapshot
        if used + len(rows) > len(seqs):
            capacity = max(2 * len(seqs), used + len(rows))
            vectors, seqs, cubes = _grown(vectors, capacity), _grown(seqs, capacity), _grown(cubes, capacity)
        for seq, cube_id, vector in rows:
            old = self._row_of.get(seq)
            if old is not None:
                self._cube_rows[int(cubes[old])] -= 1
                cubes[old] = _RETIRED
                self._retired += 1
            vectors[used], seqs[used], cubes[used] = vector, seq, cube_id
            self._cube_rows[cube_id] += 1
            self._row_of[seq] = used
            used += 1
        self._snapshot = (vectors, seqs, cubes, used)
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
        vectors, seqs, cubes, used = self._snapshot
        keep = np.flatnonzero(cubes[:used] != _RETIRED)
        self._snapshot = (vectors[keep].copy(), seqs[keep].copy(), cubes[keep].copy(), len(keep))
        self._row_of = {int(seq): row for row, seq in enumerate(self._snapshot[1][: len(keep)])}
        self._retired = 0
        self._cube_rows = Counter({cube: n for cube, n in self._cube_rows.items() if n})

    def nearest(self, query: np.ndarray, cube_ids: Sequence[int], k: int) -> list[tuple[int, float]]:
        """(seq, cosine similarity) of the k most similar vectors in the given cubes, best first.
        Blocking (a matrix product): call it on a worker thread."""
        vectors, seqs, cubes, used = self._snapshot
        if used == 0 or k <= 0:
            return []
        similarity = vectors[:used] @ query.astype(np.float32)
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
        vectors = self._snapshot[0]
        pairs = [(seq, self._row_of[seq]) for seq in seqs if seq in self._row_of]
        if not pairs:
            return {}
        values = vectors[[row for _, row in pairs]] @ query.astype(np.float32)
        return {seq: float(value) for (seq, _), value in zip(pairs, values, strict=True)}


def _grown(array: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.empty((capacity, *array.shape[1:]), array.dtype)
    grown[: len(array)] = array
    return grown
