"""BM25 in memory: FTS5's own tokens and formula over postings held in numpy, for the lexical signal.

FTS5 ranks every row that matches a query before it can sort them (31k of 100k memories for "What did Lena
decide about the billing service?": ~20 ms a statement). This index holds the same postings: filled from
FTS5's own tokens (an `fts5vocab` instance table), rows written later tokenized by an in-memory FTS5 table
with the same tokenizer, and scored with FTS5's `bm25()` formula in the same order of operations, so every
score is the same double and the ranking (ties by seq, as FTS5's sorter leaves them) is the same.

It is used only when it is known to be true of what the search's reader sees: it remembers FTS5's averages
and structure records (`memories_fts_data` rows 1 and 10, which change with every write to the index) of
the state it holds, and a search whose reader sees others takes the SQL path. Every write of this daemon
records the memories it touched (temporary triggers on the writer connection, so no write path can be
missed) and hands them to the index after commit; a write that finds the records changed since the index's
state (another process wrote: `memos import`) marks it stale and it is filled again on a worker thread,
writes that commit meanwhile replayed after.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from array import array
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from daemon import sqlite_driver
from daemon.errors import MemosError
from daemon.filters import passing
from daemon.heap import release_freed_memory
from daemon.reader_threads import blocking
from daemon.rows import read_row_pages, read_rows
from daemon.store import Connection, Step, Store
from daemon.store_errors import translated

log = logging.getLogger(__name__)

__all__ = ["LexicalIndex"]

TOKENIZE = "porter unicode61 remove_diacritics 2"  # memories_fts's tokenizer (daemon/migrations.py)
_K1, _B = 1.2, 0.75  # FTS5's bm25() constants
_TF_BITS = 24  # a posting is row << 24 | term frequency
_TF_MASK = (1 << _TF_BITS) - 1
_RETIRED = -1
_RECHECK_S = 2.0
_KEPT_BUFFERS = 4  # score arrays kept for reuse (one per search scoring at once)
_RECORDS = "SELECT id, block FROM memories_fts_data WHERE id IN (1, 10) ORDER BY id"
# The records and the connection's data_version in one statement (a write reads both twice).
_RECORDS_AND_VERSION = (
    "SELECT -1 AS id, data_version AS block FROM pragma_data_version()"
    " UNION ALL SELECT id, block FROM memories_fts_data WHERE id IN (1, 10) ORDER BY id"
)
# The memories a write touched, with what is left of them (live is NULL for one deleted).
_TOUCHED = (
    "SELECT t.seq, m.seq AS live, m.cube_id, m.content, m.tags FROM temp.lexical_touched t"
    " LEFT JOIN main.memories m ON m.seq = t.seq ORDER BY t.seq"
)
_PHRASES = re.compile(r'"([^"]*)"(?: OR "([^"]*)")*')
_TRIGGERS = (
    "CREATE TEMP TABLE IF NOT EXISTS lexical_touched (seq INTEGER PRIMARY KEY)",
    "CREATE TEMP TRIGGER IF NOT EXISTS lexical_touched_insert AFTER INSERT ON main.memories BEGIN"
    " INSERT OR IGNORE INTO lexical_touched (seq) VALUES (new.seq); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS lexical_touched_update AFTER UPDATE OF content, tags, cube_id, seq"
    " ON main.memories BEGIN INSERT OR IGNORE INTO lexical_touched (seq) VALUES (old.seq);"
    " INSERT OR IGNORE INTO lexical_touched (seq) VALUES (new.seq); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS lexical_touched_delete AFTER DELETE ON main.memories BEGIN"
    " INSERT OR IGNORE INTO lexical_touched (seq) VALUES (old.seq); END",
)

Records = tuple[bytes, ...]
# What a fill makes, swapped in at once.
_STATE = [
    "_terms",
    "_offsets",
    "_flat",
    "_added",
    "_seqs",
    "_cubes",
    "_lengths",
    "_used",
    "_filled_rows",
    "_row_of",
    "_rows",
    "_tokens",
    "_retired",
    "_cube_rows",
    "_live_cubes",
]


@dataclass
class _Change:
    before: Records
    after: Records
    seqs: list[int]  # every memory touched
    rows: list[tuple[int, int, str, str]]  # (seq, cube id, content, tags) of those that still exist


class _Tokenizer:
    """FTS5's tokenizer for memories_fts, run on an in-memory FTS5 table (one thread at a time)."""

    def __init__(self) -> None:
        self._conn = sqlite_driver.sqlite_module().connect(":memory:", check_same_thread=False)
        self._conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(content, tags, tokenize='{TOKENIZE}')")
        self._conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
        self._lock = threading.Lock()
        self._words: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def documents(self, rows: list[tuple[int, str, str]]) -> list[tuple[str, int]]:
        """(term, seq) for every token of each (seq, content, tags) row."""
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT INTO t (rowid, content, tags) VALUES (?, ?, ?)", rows)
            tokens = [(row["term"], row["doc"]) for row in read_rows(self._conn, "SELECT term, doc FROM v")]
            self._conn.execute("ROLLBACK")
        return tokens

    def word(self, word: str) -> tuple[str, ...]:
        """The terms one query word becomes (one, nearly always)."""
        with self._lock:
            terms = self._words.get(word)
            if terms is None:
                self._conn.execute("BEGIN")
                self._conn.execute("INSERT INTO t (rowid, content, tags) VALUES (1, ?, '')", (word,))
                found = read_rows(self._conn, "SELECT term FROM v ORDER BY offset")
                self._conn.execute("ROLLBACK")
                terms = tuple(row["term"] for row in found)
                self._words[word] = terms
                if len(self._words) > 50_000:
                    self._words.popitem(last=False)
            return terms


class LexicalIndex:
    """Postings of memories_fts in memory and FTS5's BM25 over them. `ready` once filled."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._tokenizer = _Tokenizer()
        self._records: Records | None = None  # the FTS5 state held; None: not filled, or stale
        self._filling = False
        self._pending: list[_Change] = []  # writes committed while filling
        self._version = 0  # odd while changing (searches on threads check it before and after)
        # Postings as filled: term -> its number; its postings are flat[offsets[n]:offsets[n + 1]].
        self._terms: dict[str, int] = {}
        self._offsets = np.zeros(1, np.int64)
        self._flat = np.empty(0, np.int64)
        self._added: dict[str, np.ndarray] = {}  # postings of rows added since (replaced, never changed)
        self._seqs = np.empty(0, np.int64)  # per row; the filled rows sorted by seq
        self._cubes = np.empty(0, np.int64)  # -1: retired
        self._lengths = np.empty(0, np.float64)  # tokens
        self._used = 0
        self._filled_rows = 0
        self._row_of: dict[int, int] = {}  # rows added since the fill
        self._rows = 0  # live rows (FTS5's row count)
        self._tokens = 0  # their tokens (FTS5's total size)
        self._retired = 0
        self._cube_rows: Counter[int] = Counter()  # live rows per cube
        self._live_cubes: frozenset[int] = frozenset()  # replaced, never changed: searches read it on threads
        self._wake = anyio.Event()
        self._filled = anyio.Event()  # set while `ready`
        self.fills = 0
        # Score arrays of finished searches, reused: a fresh one per search (800 KB at 100k rows) would be
        # mapped anew and page-faulted in, which took as long as the scoring (daemon/heap.py's threshold).
        self._score_buffers: list[np.ndarray] = []
        # Retired rows (and their share of all) past which the index is filled again without them.
        self.compact_after, self.compact_share = 4096, 0.25
        self.fill_slice = _FILL_SLICE  # token instances turned into postings at a time while filling

    @property
    def ready(self) -> bool:
        return self._records is not None

    async def wait_ready(self) -> None:
        while not self.ready:
            await self._filled.wait()

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (postings and per-row arrays; Python's dict and array headers not counted)."""
        added = sum(array.nbytes for array in self._added.values())
        rows = self._seqs.nbytes + self._cubes.nbytes + self._lengths.nbytes
        return self._flat.nbytes + self._offsets.nbytes + added + rows

    # -- keeping it true -------------------------------------------------------------------------------

    async def attach(self) -> None:
        """Record the memories every write of this process touches, then fill the index."""
        store = self._store
        async with store.write() as conn:
            for statement in _TRIGGERS:
                await conn.execute(statement)
        if self._write_hook not in store.write_hooks:
            store.write_hooks.append(self._write_hook)
        await self._fill()

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Fill the index, then look for writes of other processes now and then; runs until cancelled."""
        task_status.started()
        await self.attach()
        while True:
            with anyio.move_on_after(_RECHECK_S):
                await self._wake.wait()
            self._wake = anyio.Event()
            if self._records is None and not self._filling:
                await self._fill()
            elif not self._filling:
                async with self._store.read() as conn:
                    seen = await _records(conn)
                if seen != self._records:  # another process wrote, or a write is on its way: make sure
                    async with self._store.write():  # the write hook compares the records
                        pass

    async def _fill(self) -> None:
        self._filling, self._pending = True, []
        try:
            fresh = LexicalIndex.__new__(LexicalIndex)
            fresh.__dict__.update(self.__dict__)
            records = await anyio.to_thread.run_sync(_fill, fresh, self._store.path)
            for change in self._pending:  # writes committed since the fill's snapshot
                if change.before == records:
                    fresh._apply(change)
                    records = change.after
            self._version += 1
            for name in _STATE:
                setattr(self, name, getattr(fresh, name))
            self._records = records
            self._version += 1
            self.fills += 1
            self._filled.set()
            log.info("lexical index holds %d memories (%.1f MiB)", self._rows, self.nbytes / 2**20)
        finally:
            self._filling, self._pending = False, []

    def _write_hook(self, conn: Connection) -> tuple[Step, Step, Step]:
        """`Store.write`'s steps: FTS5's records read after BEGIN; the memories the write touched before
        COMMIT; the records again after it (FTS5 writes them at commit), the lock still held. `data_version`
        tells whether another connection committed in between: then the records are not ours alone."""
        before: Records = ()
        version = 0
        touched: list[int] = []
        rows: list[tuple[int, int, str, str]] = []

        async def begun() -> None:
            nonlocal before, version
            before, version = await _records_and_version(conn)

        async def ending() -> None:
            nonlocal touched, rows
            found = await conn.rows(_TOUCHED)
            touched = [row["seq"] for row in found]
            if touched:
                await conn.execute("DELETE FROM temp.lexical_touched")
                rows = [
                    (r["seq"], r["cube_id"], r["content"], r["tags"] or "")
                    for r in found
                    if r["live"] is not None
                ]

        async def committed() -> None:
            try:
                records, now = await _records_and_version(conn)
                after = records if touched else before
                alone = now == version
            except MemosError as exc:
                log.warning(
                    "lexical index: cannot read FTS5's records after a write (%s); filling again", exc
                )
                self._stale()
                return
            self._committed(_Change(before, after if alone else (), touched, rows))

        return begun, ending, committed

    def _committed(self, change: _Change) -> None:
        """After a write's COMMIT: the change applied if the index held the state before it; else (another
        process wrote) filled again."""
        if self._filling:
            self._pending.append(change)
        elif self._records is not None:
            if change.before != self._records or not change.after:
                log.info("memories_fts changed outside this daemon: filling the lexical index again")
                self._stale()
                return
            self._version += 1
            try:
                self._apply(change)
                self._records = change.after
            finally:
                self._version += 1
            if self._retired > self.compact_after and self._retired > self._used * self.compact_share:
                self._stale()  # filled again without the retired rows, on a worker thread; FTS5 meanwhile

    def _stale(self) -> None:
        self._records = None
        if self._filled.is_set():
            self._filled = anyio.Event()
        self._wake.set()

    def _apply(self, change: _Change) -> None:
        """The touched memories' old rows retired, their new ones (if any) added."""
        for seq in change.seqs:
            row = self._row(seq)
            if row is not None:
                self._row_of.pop(seq, None)
                self._cube_rows[int(self._cubes[row])] -= 1
                self._cubes[row] = _RETIRED
                self._rows -= 1
                self._tokens -= int(self._lengths[row])
                self._retired += 1
        if change.rows:
            self._add_rows(change.rows)
        self._live_cubes = frozenset(cube for cube, rows in self._cube_rows.items() if rows)

    def _add_rows(self, rows: list[tuple[int, int, str, str]]) -> None:
        """Rows for (seq, cube id, content, tags), tokenized as FTS5 does."""
        cube_of = {seq: cube for seq, cube, _, _ in rows}
        tokens = self._tokenizer.documents([(seq, content, tags) for seq, _, content, tags in rows])
        counts: dict[int, dict[str, int]] = defaultdict(dict)
        for term, seq in tokens:
            per = counts[seq]
            per[term] = per.get(term, 0) + 1
        added: dict[str, list[int]] = defaultdict(list)
        for seq, _, _, _ in rows:
            self._add_row(seq, cube_of[seq], counts.get(seq, {}), added)
        for term, new in added.items():  # one copy of each term's added postings per write, not per row
            old = self._added.get(term)
            fresh = np.asarray(new, np.int64)
            self._added[term] = fresh if old is None else np.concatenate((old, fresh))

    def _row(self, seq: int) -> int | None:
        """The live row of a memory."""
        row = int(np.searchsorted(self._seqs[: self._filled_rows], seq))
        if row < self._filled_rows and self._seqs[row] == seq and self._cubes[row] != _RETIRED:
            return row
        return self._row_of.get(seq)

    def _postings_of(self, term: str) -> np.ndarray:
        number = self._terms.get(term)
        filled = self._flat[self._offsets[number] : self._offsets[number + 1]] if number is not None else None
        added = self._added.get(term)
        if filled is None:
            return added if added is not None else np.empty(0, np.int64)
        return filled if added is None else np.concatenate((filled, added))

    def _add_row(self, seq: int, cube: int, terms: dict[str, int], added: dict[str, list[int]]) -> None:
        if self._used == len(self._seqs):
            capacity = max(1024, 2 * len(self._seqs))
            self._seqs, self._cubes, self._lengths = (
                _grown(self._seqs, capacity),
                _grown(self._cubes, capacity),
                _grown(self._lengths, capacity),
            )
        row = self._used
        length = sum(terms.values())
        self._seqs[row], self._cubes[row], self._lengths[row] = seq, cube, float(length)
        self._used += 1
        self._cube_rows[cube] += 1
        self._row_of[seq] = row
        self._rows += 1
        self._tokens += length
        for term, count in terms.items():
            added[term].append(row << _TF_BITS | count)

    # -- searching -------------------------------------------------------------------------------------

    async def best_matches(
        self,
        conn: Connection,
        expression: str,
        cube_ids: list[int],
        predicate: str,
        params: list[Any],
        limit: int,
    ) -> list[tuple[int, float]] | None:
        """What `daemon.bm25.best_matches` gives for an OR of quoted words, or None when this index cannot
        answer (not filled, stale, behind or ahead of the reader, a word that is a phrase): the caller then
        asks FTS5."""
        if self._records is None or limit <= 0:
            return None
        match = _PHRASES.fullmatch(expression)
        if match is None:
            return None
        words = re.findall(r'"([^"]*)"', expression)
        records = await _records(conn)
        for count in (limit * 2 + 20, None):  # the best few; all of them if too few of those pass
            ranked = await blocking(self._ranked, words, cube_ids, records, count)
            if ranked is None:
                return None
            seqs, scores, complete = ranked
            ranking = seqs.tolist()
            kept = await passing(conn, ranking, predicate, params, limit)
            score_of = dict(zip(ranking, scores.tolist(), strict=True))
            found = [(seq, score_of[seq]) for seq in kept]
            if len(found) >= limit or complete:
                break
        return found[:limit]

    def _ranked(
        self, words: list[str], cube_ids: list[int], records: Records, count: int | None
    ) -> tuple[np.ndarray, np.ndarray, bool] | None:
        """Seqs of the best `count` matching rows in `cube_ids` (all when None; more when ties straddle the
        cut), best first and ties by seq, their BM25 as FTS5 gives it, and whether they are all the matches.
        Blocking (numpy): a worker thread, or a search's reader thread. None when the index does not hold the
        reader's state."""
        version = self._version
        if version % 2 or self._records != records:
            return None
        phrases = [self._tokenizer.word(word) for word in words]
        if any(len(terms) != 1 for terms in phrases):
            return None  # a phrase of several terms (or none): FTS5 knows phrases
        postings = [self._postings_of(terms[0]) for terms in phrases]
        seqs, cubes, lengths, used = self._seqs, self._cubes, self._lengths, self._used
        n_rows, n_tokens = self._rows, self._tokens
        retired, live_cubes = self._retired, self._live_cubes
        if self._version != version:
            return None
        avgdl = float(n_tokens) / float(n_rows) if n_rows else 0.0
        buffer = self._score_buffer(used)
        try:
            score = buffer[:used]
            # FTS5 sums each phrase's term in the query's order, from 0.0: the same additions, the same doubles.
            for posting in postings:
                rows = posting >> _TF_BITS
                if retired:  # else every row is live
                    live = cubes[rows] != _RETIRED
                    rows, posting = rows[live], posting[live]
                freq = (posting & _TF_MASK).astype(np.float64)
                n_hit = float(len(rows))
                idf = math.log((n_rows - n_hit + 0.5) / (n_hit + 0.5))
                if idf <= 0.0:
                    idf = 1e-6
                d = lengths[rows]
                score[rows] += idf * ((freq * (_K1 + 1.0)) / (freq + _K1 * (1 - _B + _B * d / avgdl)))
            # Every term adds more than 0 (idf ≥ 1e-6); a mask is scanned 3x quicker than the doubles.
            every = np.flatnonzero(score != 0.0)
            if not live_cubes <= set(cube_ids):  # else every live row is in the caller's cubes
                every = every[np.isin(cubes[every], np.asarray(cube_ids, np.int64))]
            negated = -1.0 * score[every]
        finally:
            if len(self._score_buffers) < _KEPT_BUFFERS:
                self._score_buffers.append(buffer)
        complete = count is None or count >= len(every)
        if count is not None and not complete:
            cut = np.partition(negated, count - 1)[count - 1]
            best = negated <= cut  # ties at the cut kept: the result is a prefix of the whole ranking
            every, negated = every[best], negated[best]
        row_seqs = seqs[every]
        order = np.lexsort((row_seqs, negated))
        if self._version != version:  # rows retired or the index filled again while scoring
            return None
        return row_seqs[order], negated[order], complete

    def _score_buffer(self, size: int) -> np.ndarray:
        """An array of at least `size` doubles, the caller's alone until handed back, its first `size`
        zeroed."""
        try:
            buffer = self._score_buffers.pop()
        except IndexError:
            buffer = np.empty(0, np.float64)
        if len(buffer) < size:
            buffer = np.empty(size + size // 8, np.float64)  # room for rows added meanwhile
        buffer[:size].fill(0.0)
        return buffer


async def _records(conn: Connection) -> Records:
    return tuple(bytes(row["block"]) for row in await conn.rows(_RECORDS))


async def _records_and_version(conn: Connection) -> tuple[Records, int]:
    """FTS5's records and `PRAGMA data_version` (which changes when another connection commits)."""
    version, *records = await conn.rows(_RECORDS_AND_VERSION)
    return tuple(bytes(row["block"]) for row in records), int(version["block"])


def _grown(array: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.empty(capacity, array.dtype)
    grown[: len(array)] = array
    return grown


def _fill(index: LexicalIndex, path: Path) -> Records:
    """Fill `index` (a fresh one) from FTS5's own tokens in one read transaction; the records of that state.
    Blocking: a worker thread, on its own connection."""
    index._added, index._row_of = {}, {}
    index._retired = 0
    with translated(path):
        conn = sqlite_driver.connect(str(path), read_only=True)
        try:
            conn.execute("PRAGMA query_only = 0")  # for the temporary vocabulary table alone
            conn.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.memos_vocab USING fts5vocab(main, memories_fts, instance)"
            )
            conn.execute("PRAGMA query_only = 1")
            conn.execute("BEGIN")
            records = tuple(bytes(row["block"]) for row in read_rows(conn, _RECORDS))
            members = read_rows(conn, "SELECT count(*) AS n FROM memories")[0]["n"]
            seqs = np.empty(members, np.int64)
            cubes = np.empty(members, np.int64)
            at = 0
            for page in read_row_pages(conn, "SELECT seq, cube_id FROM memories ORDER BY seq", page=8192):
                for row in page:
                    seqs[at], cubes[at] = row["seq"], row["cube_id"]
                    at += 1
            index._seqs, index._cubes = seqs, cubes
            found, counts = np.unique(cubes, return_counts=True)
            index._cube_rows = Counter(dict(zip(found.tolist(), counts.tolist(), strict=True)))
            index._live_cubes = frozenset(index._cube_rows)
            index._used = index._rows = index._filled_rows = members
            _postings_from(index, conn.execute("SELECT term, doc FROM temp.memos_vocab"))
            conn.execute("COMMIT")
        finally:
            conn.close()
    release_freed_memory()  # the pages of the instances read on this thread
    return records


# Token instances turned into postings at a time while filling: the arrays of one slice (~40 bytes an
# instance, ~10 MiB) are what the fill holds beyond the postings, whatever the database's size. All of
# LongMemEval dev60 (4.6M instances) at once took +245 MiB at its peak; a slice at a time, +67.
_FILL_SLICE = 1 << 18


def _postings_from(index: LexicalIndex, instances: Iterable[tuple[str, int]]) -> None:
    """The filled postings from (term, doc) instances, grouped by term and by doc within a term (as fts5vocab
    gives them), a slice of whole terms at a time so the fill's memory stays bounded."""
    terms: dict[str, int] = {}
    numbers, docs = array("q"), array("q")
    flats: list[np.ndarray] = []
    term_counts: list[np.ndarray] = []
    lengths = np.zeros(len(index._seqs), np.int64)
    term: str | None = None
    number = -1

    def slice_done() -> None:
        flat, per_term, tokens = _postings_of_slice(index._seqs, numbers, docs, terms_before, len(terms))
        flats.append(flat)
        term_counts.append(per_term)
        lengths[:] += tokens
        del numbers[:], docs[:]

    terms_before = 0
    for word, doc in instances:
        if word != term:
            if len(numbers) >= index.fill_slice:  # only between terms: a term's postings come from one slice
                slice_done()
                terms_before = len(terms)
            term = word
            number = terms.setdefault(word, len(terms))
        numbers.append(number)
        docs.append(doc)
    slice_done()
    index._terms = terms
    index._flat = np.concatenate(flats)
    index._offsets = np.concatenate(([0], np.cumsum(np.concatenate(term_counts)))).astype(np.int64)
    index._lengths = lengths.astype(np.float64)
    index._tokens = int(lengths.sum())


def _postings_of_slice(
    seqs: np.ndarray, numbers: array[int], docs: array[int], first_term: int, end_term: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One slice's postings (row << _TF_BITS | tokens), how many each of its terms has (terms first_term up
    to end_term), and the tokens it adds to each row."""
    by_term = np.frombuffer(numbers, np.int64) - first_term if numbers else np.empty(0, np.int64)
    rows = np.searchsorted(seqs, np.frombuffer(docs, np.int64) if docs else np.empty(0, np.int64))
    key = by_term * (len(seqs) + 1) + rows
    if len(key) > 1 and (np.diff(key) < 0).any():
        key = np.sort(key)
    starts = np.flatnonzero(np.diff(key, prepend=-1))  # one posting per (term, row): its tokens counted
    counts = np.diff(np.append(starts, len(key)))
    term_of, row_of = np.divmod(key[starts], len(seqs) + 1)
    per_term = np.bincount(term_of, minlength=end_term - first_term)
    return row_of << _TF_BITS | counts, per_term, np.bincount(rows, minlength=len(seqs))
