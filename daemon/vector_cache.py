"""An in-memory copy of the vectors for nearest-neighbour search without the database.

sqlite-vec's brute-force KNN scans 100k 384-dimension vectors in ~70 ms on this class of machine; one matrix
product over the same float32 matrix takes ~7-11 ms. The database stays the truth: the cache is filled from
it at start and changed only after a write commits.

Two precisions (`[search] vector_precision`):
- "float32": 4 bytes per dimension (1.5 KiB a memory with MiniLM, ~150 MiB at 100k); `nearest` is exact.
- "int8": 1 byte per dimension and a scale, an error and a code sum per row (~40 MiB at 100k): each unit
  vector x is held as codes c = round(x / s) with s = max|x| / 127 and its error |x - s c|, the query as such
  codes too, and onnxruntime's integer product (MLAS's u8 x s8 kernels, AVX2 or VNNI) ranks every row in
  about a quarter of the CPU of the float32 product. The codes are held transposed, a block of rows as the
  columns of a (dimensions x rows) matrix, and the query's codes + 128 (+ 64 where the kernel would saturate,
  `query_levels`) are the product's left (uint8) operand: MLAS then packs only the query, where with the
  rows on the left it packed every row's codes on every product (7.7 -> 4.7 ms of CPU at 100k, AMD EPYC,
  2026-12-02), and a one-row left operand takes its matrix-vector kernel (8.3 -> 3.4 ms against the query in
  two parts, which kept its own error negligible). The offset adds itself times a row's code sum to its
  product, taken off again with that lift held per row. `nearest` then returns a shortlist with approximate
  similarities, which the vector index re-scores exactly from the stored float32 vectors
  (daemon/vectors.py). A row's approximate similarity is within a bound of its exact one (`_Int8.errors`);
  the shortlist holds every row whose bound reaches the k-th best lower end, so it holds the true top k
  unless more rows than its cap could (`capped` counts those searches, the log tells the first and every
  100th; the top k may then miss a row). Searches at once share products (daemon/vector_batches.py): up to
  8 queries in one, for about the CPU of one; a product alone on a machine with an idle core is split over
  two threads (onnxruntime's): ~30% less wait, ~7% more CPU.

The vectors live in blocks of a fixed number of rows, allocated as rows arrive: adding never copies
them into a larger array, so memory grows by one block at a time and has no peak of two copies. Each block is
on huge pages where the kernel offers them (`_block`).

Searches run on other threads (their readers' or anyio's workers) while the event loop appends, so the tuples
of blocks and the id arrays are replaced, never resized in place, and a search reads one consistent snapshot:
rows past its `used` count may be written meanwhile, rows before it are only ever retired (their cube set to -1).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import mmap
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from daemon.vector_batches import Batches

log = logging.getLogger(__name__)

Precision = Literal["float32", "int8"]
# blocks of vectors (float32 rows, or int8 codes as the columns of a (dims x rows) block), blocks of each
# row's (scale, error, lift: the query codes' offset x code sum) as columns (int8 only), seqs, cube ids, rows in use
_Snapshot = tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], np.ndarray, np.ndarray, int]
_Scored = tuple[_Snapshot, np.ndarray]  # the snapshot a product read, and its similarities
_RETIRED = -1  # cube id of a row whose memory got a newer vector
BLOCK_ROWS = 8192  # rows per block: 12 MiB of float32 with MiniLM's 384 dimensions (int8: twice, 6 MiB)
_FACTS = 3  # an int8 row's scale, error and lift (the query codes' offset x the sum of its codes)
_HUGE_PAGE = 2 << 20  # bytes: a block's start is aligned to this (x86-64's huge page; others' are no larger)
_TABLE_LIMIT = 1 << 20  # cube ids up to this are looked up in a table (at most 1 MiB), larger by np.isin


class VectorCache:
    def __init__(self, dims: int, *, precision: Precision = "float32", block_rows: int | None = None) -> None:
        self.dims = dims
        self.exact = precision == "float32"
        self.block_rows = block_rows or (BLOCK_ROWS if self.exact else 2 * BLOCK_ROWS)
        self._int8 = None if self.exact else _Int8()
        self._snapshot: _Snapshot = ((), (), np.empty(1024, np.int64), np.empty(1024, np.int64), 0)
        self._rows = _RowOf()
        self._retired = 0
        self._cube_rows: Counter[int] = Counter()  # live rows per cube
        self._live_cubes: frozenset[int] = frozenset()  # replaced, never changed: searches read it on threads
        self.capped = 0  # int8 searches whose shortlist hit its cap (their top k may miss a true one)
        self._batches: Batches[_CodedQuery, _Scored] = Batches(self._int8_scores)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def vector_bytes(self) -> int:
        """Memory held by the vectors' blocks (at most one block more than the rows need)."""
        blocks, scales = self._snapshot[:2]
        return sum(block.nbytes for block in blocks) + sum(block.nbytes for block in scales)

    def reserve(self, rows: int) -> None:
        """Make room for `rows` seqs and cube ids before filling the cache (the vectors' blocks come as
        rows arrive)."""
        blocks, scales, seqs, cubes, used = self._snapshot
        if rows > len(seqs):
            self._snapshot = (blocks, scales, _grown(seqs, rows), _grown(cubes, rows), used)

    def upsert(self, rows: Iterable[tuple[int, int, np.ndarray]]) -> None:
        """Add (seq, cube id, unit vector) rows; a seq seen before gets its new vector."""
        rows = list(rows)
        if not rows:
            return
        blocks, scales, seqs, cubes, used = self._snapshot
        if used + len(rows) > len(seqs):
            capacity = max(2 * len(seqs), used + len(rows))  # ids only: 16 bytes a row
            seqs, cubes = _grown(seqs, capacity), _grown(cubes, capacity)
        needed = -(-(used + len(rows)) // self.block_rows)
        if needed > len(blocks):
            more = range(needed - len(blocks))
            if self.exact:
                blocks = blocks + tuple(_block(self.block_rows, self.dims, np.float32) for _ in more)
            else:
                blocks = blocks + tuple(_block(self.dims, self.block_rows, np.int8) for _ in more)
                scales = scales + tuple(np.empty((_FACTS, self.block_rows), np.float32) for _ in more)
        vectors = np.stack([vector for _, _, vector in rows]).astype(np.float32, copy=False)
        row_scales = None
        if self._int8 is not None:
            vectors, row_scales = self._int8.encoded(vectors)
        size = self.block_rows
        for index, (seq, cube_id, _) in enumerate(rows):
            old = self._rows.get(seq)
            if (
                old >= 0
                and int(cubes[old]) == cube_id
                and self._holds(blocks, scales, old, vectors[index], row_scales, index)
            ):
                continue  # the same vector again (a PostgreSQL cache reading its own writes back)
            if old >= 0:
                if cubes is self._snapshot[3]:
                    # A search under way reads the rows of the snapshot it began with: retiring one in place
                    # would hide that memory from it (its new row is past the search's `used`), so the cube
                    # ids it reads stay as they were and the change goes into a copy.
                    cubes = cubes.copy()
                self._cube_rows[int(cubes[old])] -= 1
                cubes[old] = _RETIRED
                self._retired += 1
            if row_scales is None:
                blocks[used // size][used % size] = vectors[index]
            else:
                blocks[used // size][:, used % size] = vectors[index]
                scales[used // size][:, used % size] = row_scales[index]
            seqs[used], cubes[used] = seq, cube_id
            self._cube_rows[cube_id] += 1
            self._rows.set(seq, used)
            used += 1
        self._snapshot = (blocks, scales, seqs, cubes, used)
        self._live_cubes = frozenset(cube for cube, n in self._cube_rows.items() if n)
        if self._retired > 1024 and self._retired > used // 4:
            self._compact()

    def _holds(
        self,
        blocks: tuple[np.ndarray, ...],
        scales: tuple[np.ndarray, ...],
        row: int,
        vector: np.ndarray,
        row_scales: np.ndarray | None,
        index: int,
    ) -> bool:
        """Whether `row` holds `vector` already (int8: the same codes and facts)."""
        block, at = divmod(row, self.block_rows)
        if row_scales is None:
            return bool(np.array_equal(blocks[block][at], vector))
        codes, facts = blocks[block][:, at], scales[block][:, at]
        return bool(np.array_equal(codes, vector) and np.array_equal(facts, row_scales[index]))

    def discard(self, seqs: Iterable[int]) -> None:
        blocks, scales, ids, cubes, used = self._snapshot
        rows = [row for row in (self._rows.pop(seq) for seq in seqs) if row >= 0]
        if not rows:
            return
        cubes = cubes.copy()  # searches under way keep the rows they began with (`upsert`)
        for row in rows:
            self._cube_rows[int(cubes[row])] -= 1
            cubes[row] = _RETIRED
            self._retired += 1
        self._snapshot = (blocks, scales, ids, cubes, used)
        self._live_cubes = frozenset(cube for cube, n in self._cube_rows.items() if n)

    def _compact(self) -> None:
        """Drop retired rows: the live ones copied into new blocks, a block at a time."""
        blocks, scales, seqs, cubes, used = self._snapshot
        keep = np.flatnonzero(cubes[:used] != _RETIRED)
        fresh: list[np.ndarray] = []
        fresh_scales: list[np.ndarray] = []
        size = self.block_rows
        for start in range(0, len(keep), size):
            rows = keep[start : start + size]
            if self.exact:
                block = _block(size, self.dims, np.float32)
                block[: len(rows)] = _gathered(blocks, size, rows)
            else:
                block = _block(self.dims, size, np.int8)
                block[:, : len(rows)] = _gathered(blocks, size, rows, axis=1)
                scale = np.empty((_FACTS, size), np.float32)
                scale[:, : len(rows)] = _gathered(scales, size, rows, axis=1)
                fresh_scales.append(scale)
            fresh.append(block)
        self._snapshot = (tuple(fresh), tuple(fresh_scales), seqs[keep].copy(), cubes[keep].copy(), len(keep))
        self._rows = _RowOf(self._snapshot[2][: len(keep)])
        self._retired = 0
        self._cube_rows = Counter({cube: n for cube, n in self._cube_rows.items() if n})

    def nearest(self, query: np.ndarray, cube_ids: Sequence[int], k: int) -> list[tuple[int, float]]:
        """(seq, cosine similarity) of the k most similar vectors in the given cubes, best first. With int8,
        a shortlist of more than k rows with approximate similarities, best first, to be re-scored exactly.
        Blocking (a matrix product): call it on a worker thread."""
        return self.nearest_within(query, cube_ids, k, k)[0]

    def nearest_within(
        self, query: np.ndarray, cube_ids: Sequence[int], k: int, first: int
    ) -> tuple[list[tuple[int, float]], int]:
        """`nearest`'s k, and how many of them (int8: a prefix of the shortlist, each part best first) make
        the shortlist for the nearest `first` <= k: re-scored alone, they give the exact top `first`, so a
        caller that finds those enough reads no more rows. Blocking, as `nearest`.

        int8: the query is coded as one row first (MLAS's matrix-vector kernel, under half the CPU of two
        rows); when its wider bounds might leave a true row past the shortlist's cap (a near tie of many
        vectors), the product is made again with the query in two parts, whose own error is ~100x smaller."""
        if self._snapshot[4] == 0 or k <= 0:
            return [], 0
        query = query.astype(np.float32)
        found, inner, capped = self._shortlist(query, cube_ids, k, first, parts=1)
        if capped:
            found, inner, capped = self._shortlist(query, cube_ids, k, first, parts=2)
            if capped:
                self._count_capped()
        return found, inner

    def _shortlist(
        self, query: np.ndarray, cube_ids: Sequence[int], k: int, first: int, parts: int
    ) -> tuple[list[tuple[int, float]], int, bool]:
        """`nearest_within`'s answer, and whether (int8, the query in `parts` rows) rows past the cap might
        belong to the top k."""
        blocks, scales, seqs, cubes, used = self._snapshot
        coded = None
        if self._int8 is None:
            similarity = np.empty(used, np.float32)
            for start, end, block, _ in _filled(blocks, (), self.block_rows, used):
                np.dot(block, query, out=similarity[start:end])
        else:
            coded = _Int8.coded_query(query, parts)
            (blocks, scales, seqs, cubes, used), similarity = self._batches.run(coded)
        size = self.block_rows
        cap = k if self._int8 is None else self._int8.cap(k)
        if self._live_cubes <= set(cube_ids):
            # Every live row is readable (one user's cubes, the usual case): no mask over every row's cube.
            if self._retired:
                similarity[cubes[:used] == _RETIRED] = -np.inf
            eligible = used - self._retired
        else:
            readable = _readable(cubes[:used], cube_ids)
            similarity[~readable] = -np.inf
            eligible = int(np.count_nonzero(readable))
        if eligible == 0:
            return [], 0, False
        # The `cap` best, by argpartition from the top (no negated copy of every row's similarity).
        candidates = np.argpartition(similarity, used - cap)[used - cap :] if used > cap else np.arange(used)
        candidates = candidates[similarity[candidates] > -np.inf]
        capped = False
        if self._int8 is not None and coded is not None and len(candidates) > k:
            # A row's exact similarity lies within its bound of its approximate one, so at least k rows score
            # `low` or more exactly (the k-th largest lower end), and every row of the true top k has an upper
            # end of at least `low`. Rows past the cap have upper ends of at most the lowest one's + the
            # largest bound: when that reaches `low`, one of them might belong (`capped`).
            approx = similarity[candidates]
            error, query_error = self._int8.errors(query, coded)
            bounds = _gathered(scales, size, candidates, axis=1)[1] * error + query_error
            low = np.partition(approx - bounds, len(candidates) - k)[len(candidates) - k]
            capped = (
                len(candidates) < eligible and approx.min() + self._int8.error * error + query_error >= low
            )
            kept = approx + bounds >= low
            candidates, approx, bounds = candidates[kept], approx[kept], bounds[kept]
            if first < k and len(candidates) > first:
                # The same rule for `first`, over the rows kept for k (a superset of those it keeps over
                # every row: the `first`-th largest lower end of fewer rows is no larger).
                low = np.partition(approx - bounds, len(candidates) - first)[len(candidates) - first]
                inner = approx + bounds >= low
                head, tail = candidates[inner], candidates[~inner]
                order = np.concatenate(
                    [self._best_first(head, similarity, seqs), self._best_first(tail, similarity, seqs)]
                )
                pairs = list(zip(seqs[order].tolist(), similarity[order].tolist(), strict=True))
                return pairs, len(head), capped
        if self._int8 is None and len(candidates) == cap and used > cap:
            # Rows tied with the k-th are all taken, so the lower seqs among them win (as everywhere else).
            candidates = np.flatnonzero(similarity >= similarity[candidates].min())
        order = self._best_first(candidates, similarity, seqs)[: max(cap, k)]
        pairs = list(zip(seqs[order].tolist(), similarity[order].tolist(), strict=True))
        return pairs, len(pairs) if self._int8 is not None else min(first, len(pairs)), capped

    @staticmethod
    def _best_first(rows: np.ndarray, similarity: np.ndarray, seqs: np.ndarray) -> np.ndarray:
        """`rows` by similarity, best first, ties by lower seq."""
        return rows[np.lexsort((seqs[rows], -similarity[rows]))]

    def _count_capped(self) -> None:
        """Count a search whose shortlist hit its cap, and say so in the log (the first, then every 100th)."""
        self.capped += 1
        if self.capped % 100 == 1:
            log.warning(
                "vector search: %d int8 searches so far had more candidates than their shortlist holds (a near"
                ' tie of many vectors); their top k may miss a memory ([search] vector_precision = "float32"'
                " is exact)",
                self.capped,
            )

    def _int8_scores(self, queries: list[_CodedQuery], alone: bool) -> list[_Scored]:
        """Approximate similarities of every row to each of `queries`, in one product over the latest
        snapshot (daemon/vector_batches.py); `alone`: split it over two threads."""
        snapshot = self._snapshot
        blocks, scales, _, _, used = snapshot
        session = _matmul_integer(2 if alone else 1)
        lifted = np.concatenate([query.lifted for query in queries])
        scored = [np.empty(used, np.float32) for _ in queries]
        for start, end, block, facts in _filled(blocks, scales, self.block_rows, used):
            _Int8.product(session, block, facts, lifted, queries, [out[start:end] for out in scored])
        return [(snapshot, similarity) for similarity in scored]

    def similarities(self, query: np.ndarray, seqs: Iterable[int]) -> dict[int, float]:
        """Cosine similarity of `query` to each of `seqs` that has a vector (float32 only: int8 similarities
        are approximate, and the vector index reads those from the store). Hundreds of dot products, a few
        thousand with whole episodes read (context, episode): about 1 ms for 5,000 (measured), cheap enough
        for the event loop, where the cache is also changed, so rows cannot move meanwhile. Never on another
        thread (a search's reads on a reader's thread read these from the store: daemon/vectors.py)."""
        assert self.exact, "an int8 cache holds no exact vectors"
        blocks = self._snapshot[0]
        pairs = [(seq, row) for seq in seqs if (row := self._rows.get(seq)) >= 0]
        if not pairs:
            return {}
        rows = np.fromiter((row for _, row in pairs), np.int64, len(pairs))
        values = _gathered(blocks, self.block_rows, rows) @ query.astype(np.float32)
        return {seq: float(value) for (seq, _), value in zip(pairs, values, strict=True)}


def _readable(cubes: np.ndarray, cube_ids: Sequence[int]) -> np.ndarray:
    """Whether each row's cube is one of `cube_ids` (a retired row's, -1, never): one gather from a table
    indexed by cube id, a fraction of np.isin's passes over every row."""
    wanted = np.asarray(cube_ids, dtype=np.int64)
    wanted = wanted[wanted >= 0]
    top = int(wanted.max(initial=-1))
    if top >= _TABLE_LIMIT:
        return np.isin(cubes, wanted)
    table = np.zeros(top + 2, bool)  # its last entry stays False: cube ids past `top` are clipped to it
    table[wanted] = True
    readable = np.take(table, cubes, mode="clip")  # -1 clips to 0
    if table[0]:
        readable &= cubes != _RETIRED
    return readable


class _RowOf:
    """Seq -> row of the cache, -1 when absent: an int32 array indexed by seq (memories' seqs are SQLite rowids,
    nearly dense: 4 bytes a seq, against ~110 bytes a row for a dict of ints), seqs far past the rows held in a
    dict so that memory stays bounded by the rows. Used on the event loop only (searches never read it)."""

    def __init__(self, seqs: np.ndarray | None = None) -> None:
        self._dense = np.full(0, -1, np.int32)
        self._sparse: dict[int, int] = {}
        self._count = 0
        if seqs is not None and len(seqs):
            seqs = seqs.astype(np.int64, copy=False)
            dense = (seqs >= 0) & (seqs < self._limit(len(seqs)))
            self._dense = np.full(int(seqs[dense].max(initial=-1)) + 1, -1, np.int32)
            rows = np.arange(len(seqs), dtype=np.int32)
            self._dense[seqs[dense]] = rows[dense]
            self._sparse = {int(seq): int(row) for seq, row in zip(seqs[~dense], rows[~dense], strict=True)}
            self._count = len(seqs)

    def __len__(self) -> int:
        return self._count

    def _limit(self, rows: int) -> int:
        return 4 * rows + 65_536

    def get(self, seq: int) -> int:
        if 0 <= seq < len(self._dense):
            return int(self._dense[seq])
        return self._sparse.get(seq, -1)

    def set(self, seq: int, row: int) -> None:
        if 0 <= seq < len(self._dense):
            self._count += int(self._dense[seq] < 0)
            self._dense[seq] = row
        elif 0 <= seq < self._limit(self._count + 1):
            size = min(max(2 * len(self._dense), seq + 1), self._limit(self._count + 1))
            grown = np.full(size, -1, np.int32)
            grown[: len(self._dense)] = self._dense
            for held in [held for held in self._sparse if 0 <= held < size]:  # seqs now in the array's range
                grown[held] = self._sparse.pop(held)
            self._dense = grown
            self.set(seq, row)
        else:
            self._count += seq not in self._sparse
            self._sparse[seq] = row

    def pop(self, seq: int) -> int:
        """The row of `seq` (-1 when absent), forgotten."""
        if 0 <= seq < len(self._dense):
            row = int(self._dense[seq])
            self._dense[seq] = -1
        else:
            row = self._sparse.pop(seq, -1)
        self._count -= row >= 0
        return row


class _Int8:
    """The int8 codes of unit vectors, their product with a query, and how far it can be from the exact one."""

    def __init__(self) -> None:
        self.error = 0.0  # the largest |x - s c| of any row encoded (a row's quantisation error)
        self.norm = 0.0  # the largest |s c|
        # Made now, not by two searches' threads at once.
        _matmul_integer(1), _matmul_integer(2), query_levels()

    def encoded(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(int8 codes, each row's (scale, error |x - s c|, lift: the query codes' offset x the sum of its
        codes)) of float32 rows."""
        codes, scales = _quantised(vectors)
        decoded = codes * scales[:, None]
        errors = np.linalg.norm(vectors - decoded, axis=1)
        self.error = max(self.error, float(errors.max()))
        self.norm = max(self.norm, float(np.linalg.norm(decoded, axis=1).max()))
        lift = (query_levels() + 1) * codes.sum(axis=1)  # exact in float32: at most 128 x 127 x d
        return codes.astype(np.int8), np.stack([scales, errors, lift], axis=1).astype(np.float32)

    @staticmethod
    def coded_query(query: np.ndarray, parts: int = 1) -> _CodedQuery:
        """The query as int8 codes too, in `parts` rows (the second codes what the first leaves). One row
        takes MLAS's matrix-vector kernel: at 100k rows 3.4 ms of CPU against 8.3 for two (its matrix
        kernel); its own error widens each row's bound, ~30% more rows re-scored. Two rows make the query's
        error negligible beside a row's, for near ties of many vectors."""
        levels = query_levels()
        first, first_scale = _quantised(query[None, :], levels)
        coded, scales = [first[0]], [first_scale[0]]
        if parts == 2:
            rest, rest_scale = _quantised((query - first[0] * first_scale[0])[None, :], levels)
            coded.append(rest[0])
            scales.append(rest_scale[0])
        codes, scale = np.stack(coded, axis=1), np.array(scales, np.float32)
        lifted = np.ascontiguousarray((codes.T + levels + 1).astype(np.uint8))
        return _CodedQuery(lifted, scale, codes @ scale)

    @staticmethod
    def product(
        session: Any,
        codes: np.ndarray,
        facts: np.ndarray,
        lifted: np.ndarray,
        queries: list[_CodedQuery],
        outs: list[np.ndarray],
    ) -> None:
        """Approximate similarities of rows, given as the int8 columns of `codes` (d x rows) and their
        `facts` (scale, error, lift; one row each), to each query (its codes + their offset,
        `query_levels() + 1`, its parts' rows of `lifted`), into its `out`."""
        codes = np.ascontiguousarray(codes)  # a block's rows in use, a copy only in the last block
        dots = session.run(None, {"A": lifted, "B": codes})[0].astype(np.float32)  # exact: < 2^24
        dots -= facts[2]  # the query codes' offset times each row's code sum: exact integers still
        row = 0
        for query, out in zip(queries, outs, strict=True):
            parts = len(query.scales)
            np.dot(query.scales, dots[row : row + parts], out=out)
            out *= facts[0]
            row += parts

    def errors(self, query: np.ndarray, coded: _CodedQuery) -> tuple[float, float]:
        """How far an approximate similarity can be from the exact x.q, as (a, b): a row's bound is its
        |e| times a, plus b. With x = s c + e and the query q = p + f (p its decoded codes),
        x.q - (s c).p = e.q + (s c).f, at most |e| |q| + |s c| |f| (Cauchy-Schwarz); b adds float32
        rounding of the products."""
        query_error = float(np.linalg.norm(query - coded.decoded))
        return float(np.linalg.norm(query)), self.norm * query_error + 1e-5

    @staticmethod
    def cap(k: int) -> int:
        """The most rows a shortlist for k may hold: at 100k MiniLM vectors the bound keeps ~600 for k = 200
        (at most ~960 of 100 queries measured), ~50 for k = 8."""
        return 6 * k + 256


class _CodedQuery(NamedTuple):
    lifted: np.ndarray  # its parts' codes + their offset (query_levels() + 1), uint8, parts x d
    scales: np.ndarray  # float32, one a part
    decoded: np.ndarray  # codes @ scales


def _quantised(vectors: np.ndarray, levels: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row codes in -levels..levels (float32) and their scales."""
    scales = np.abs(vectors).max(axis=1) / float(levels)
    scales[scales == 0] = 1.0
    scales = scales.astype(np.float32)
    return np.rint(vectors / scales[:, None]).astype(np.float32), scales


@functools.cache
def _matmul_integer(threads: int) -> Any:
    """One onnxruntime session (thread-safe) of a graph holding one MatMulInteger: (m x d uint8) x (d x n
    int8) -> int32, on the caller's thread and `threads` - 1 of the session's own, which block (no spinning)
    between products."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(matmul_integer_model(), options, providers=["CPUExecutionProvider"])


@functools.cache
def query_levels() -> int:
    """The query's codes' range either side of zero: 127 where this machine's u8 x s8 product is exact, else
    63. Without VNNI (AVX2 alone) MLAS adds each two u8 x s8 products in 16 bits (`vpmaddubsw`), which
    saturates past 32,767: codes + 128 up to 255 times rows' codes up to 127 reach 64,770, and the product is
    wrong (on an AMD EPYC without AVX-512: off by up to 83,000 on random codes, and the int8 top k no longer
    the exact one). Codes in -63..63 go in as 1..127, whose pairs stay within 2 x 127 x 127 = 32,258; the
    query's coarser codes only widen the bounds, so more rows are re-scored. Checked once, on the largest
    sums either way, against numpy's exact product, on both sessions."""
    dims = 64
    lifted = np.full((1, dims), 255, np.uint8)
    codes = np.empty((dims, 2), np.int8)
    codes[:, 0], codes[:, 1] = 127, -127
    exact = lifted.astype(np.int64) @ codes.astype(np.int64)
    for threads in (1, 2):
        if not np.array_equal(_matmul_integer(threads).run(None, {"A": lifted, "B": codes})[0], exact):
            log.info(  # nothing for the user to do: searches stay exact
                "vector search: this CPU's 8-bit product saturates (no VNNI); questions are coded to 7 bits,"
                " so int8 searches re-score more rows"
            )
            return 63
    return 127


def matmul_integer_model() -> bytes:
    """The ONNX model (a protobuf, written here) of Y = MatMulInteger(A, B) with A uint8 [m, d] (queries)
    and B int8 [d, n] (rows); tests/test_vector_cache.py checks it against onnx's own builder."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte, value = value & 0x7F, value >> 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)

    def number(field: int, value: int) -> bytes:
        return varint(field << 3) + varint(value)

    def message(field: int, payload: bytes | str) -> bytes:
        data = payload.encode() if isinstance(payload, str) else payload
        return varint(field << 3 | 2) + varint(len(data)) + data

    def value_info(name: str, elem_type: int, shape: tuple[int | str, ...]) -> bytes:
        dims = b"".join(
            message(1, message(2, dim) if isinstance(dim, str) else number(1, dim)) for dim in shape
        )  # TensorShapeProto.dim: dim_param (2) or dim_value (1)
        tensor_type = number(1, elem_type) + message(2, dims)
        return message(1, name) + message(2, message(1, tensor_type))

    uint8, int8, int32 = 2, 3, 6  # TensorProto.DataType
    node = message(1, "A") + message(1, "B") + message(2, "Y") + message(4, "MatMulInteger")
    graph = (
        message(1, node)
        + message(2, "int8_knn")
        + message(11, value_info("A", uint8, ("m", "d")))
        + message(11, value_info("B", int8, ("d", "n")))
        + message(12, value_info("Y", int32, ("m", "n")))
    )
    return number(1, 8) + message(7, graph) + message(8, number(2, 13))  # IR version 8, opset 13


def _block(rows: int, dims: int, dtype: np.dtype[Any] | type[np.generic]) -> np.ndarray:
    """An uninitialised (rows, dims) block on a mapping of its own, its start aligned to 2 MiB and the
    kernel advised to back it with huge pages: every search reads every row, and with 4 KiB pages (or a
    block that starts mid-page, which leaves a third of it on small ones) its product took ~17% more CPU
    (100k rows, 2026-12-02, bench/README.md). The 2 MiB of alignment slack are never touched, so not
    resident; where huge pages are off or unknown the advice is a no-op."""
    size = rows * dims * np.dtype(dtype).itemsize
    if size < _HUGE_PAGE or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.empty((rows, dims), dtype)
    private = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS  # mmap's default, shared memory, gets no huge pages
    memory = mmap.mmap(-1, size + _HUGE_PAGE, flags=private)
    offset = -np.frombuffer(memory, np.uint8, count=1).ctypes.data % _HUGE_PAGE
    with contextlib.suppress(OSError):  # a kernel without transparent huge pages refuses it: small pages
        memory.madvise(mmap.MADV_HUGEPAGE, offset, size)
    return np.frombuffer(memory, dtype, count=rows * dims, offset=offset).reshape(rows, dims)


def _filled(
    blocks: tuple[np.ndarray, ...], scales: tuple[np.ndarray, ...], size: int, used: int
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """(first row, end, the block's rows in use, their facts) of each block holding rows below `used`:
    with `scales` (int8) the blocks' and their facts' columns, else the blocks' rows and an empty array."""
    for index, block in enumerate(blocks):
        start = index * size
        if start >= used:
            return
        end = min(start + size, used)
        if scales:
            yield start, end, block[:, : end - start], scales[index][:, : end - start]
        else:
            yield start, end, block[: end - start], np.empty(0)


def _gathered(blocks: tuple[np.ndarray, ...], size: int, rows: np.ndarray, axis: int = 0) -> np.ndarray:
    """The rows of `rows` (a row's block is row // size), in the order given; `axis=1`: blocks that hold
    their rows as columns, gathered as columns."""
    which, offset = np.divmod(rows, size)
    if axis == 0:
        out = np.empty((len(rows), *blocks[0].shape[1:]), blocks[0].dtype)
        for index in np.unique(which):
            mask = which == index
            out[mask] = blocks[index][offset[mask]]
        return out
    out = np.empty((blocks[0].shape[0], len(rows)), blocks[0].dtype)
    for index in np.unique(which):
        mask = which == index
        out[:, mask] = blocks[index][:, offset[mask]]
    return out


def _grown(array: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.empty((capacity, *array.shape[1:]), array.dtype)
    grown[: len(array)] = array
    return grown
