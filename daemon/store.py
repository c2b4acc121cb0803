"""The embedded store: one SQLite file, one writer connection, two small pools of readers.

Every write runs in `Store.write()`: one `BEGIN IMMEDIATE` transaction on the single writer connection,
serialised by a lock, shielded from cancellation so a started write always commits or rolls back, and
acknowledged only after COMMIT returns (with `synchronous=FULL`, after it is on disk). Reads use their own
connections and never wait for the writer (WAL); long reads (searches) have readers of their own, so a short
read (a get, a listing, a token check) never waits behind them, and run whole on their reader's thread
(`long_read`, daemon/reader_threads.py). Every call into SQLite runs inside `translated()`
(daemon/store_errors.py), so what leaves the store is a `MemosError`, never a sqlite exception.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiosqlite
import anyio
import anyio.lowlevel

from daemon import sqlite_driver
from daemon.errors import StoreClosed, StoreCorrupt
from daemon.migrations import apply_migrations
from daemon.packed_columns import Kind, Packed, exact, from_columns, from_rows, packed_sql
from daemon.private_files import private_file
from daemon.reader_threads import close_here, on_reader_thread, run_here
from daemon.rows import Row, by_column, column_names, read_rows
from daemon.store_errors import CHECK_ADVICE, sqlite_errors, translated

log = logging.getLogger(__name__)

# Readers for short reads beside `[storage] read_connections` for long ones (searches): a get, a listing, a
# token check never wait for a search to end.
SHORT_READ_CONNECTIONS = 2

C = TypeVar("C")
T = TypeVar("T")
Step = Callable[[], Awaitable[None]]
WriteHook = Callable[["Connection"], tuple[Step, Step, Step]]


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


class Connection:
    """A thin, typed face over one aiosqlite connection (or, on its own thread, its statements run in place)."""

    dialect = "sqlite"  # what the backend-specific modules (lexical, vectors) branch on

    def __init__(self, raw: SQLiteConnection | InPlace) -> None:
        self._raw = raw
        self.committed: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once this write transaction has committed (never if it rolls back): for in-memory
        state that must not run ahead of the database."""
        self.committed.append(callback)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the last inserted rowid."""
        with translated():
            _, _, rowid = await self._raw.run(sql, params, fetch=0)
        return rowid or 0

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with translated():
            await self._raw.executemany(sql, rows)

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a query, each read by column name."""
        with translated():
            names, values, _ = await self._raw.run(sql, params, fetch=-1)
        return Row.many(names, values)

    async def row(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query (None if there is none), read by column name."""
        with translated():
            names, values, _ = await self._raw.run(sql, params, fetch=1)
        return Row.from_columns(names, values[0]) if values else None

    async def column(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The single column of a one-column query, every row (no `Row` built per row: for long lists of seqs)."""
        with translated():
            names, values, _ = await self._raw.run(sql, params, fetch=-1)
        if len(names) != 1:
            raise ValueError(f"column() needs a query of one column, not {len(names)}: {sql}")
        return [value for (value,) in values]

    async def columns(self, sql: str, params: Sequence[Any] = ()) -> dict[str, tuple[Any, ...]]:
        """Every row of a query column-wise, by column name (no `Row` built per row: for long reads of a few
        columns, such as the stored vectors a search re-scores)."""
        with translated():
            names, values, _ = await self._raw.run(sql, params, fetch=-1)
        return by_column(names, values)

    async def packed_columns(self, sql: str, params: Sequence[Any], kinds: Mapping[str, Kind]) -> Packed:
        """Every row of a query column-wise, read packed into a row or a few (daemon/packed_columns.py): for
        long reads whose rows are matched by a column of their own, not by their order. `kinds`: the query's
        columns."""
        with translated():
            names, values, _ = await self._raw.run(packed_sql(sql, kinds), params, fetch=-1)
        rows = Row.many(names, values)
        if not exact(rows):  # a float in a value column: read row by row, which keeps every bit
            return from_columns(await self.columns(sql, params), kinds)
        return from_rows(rows, kinds)

    async def value(self, sql: str, params: Sequence[Any] = (), default: Any = None) -> Any:
        """The single column of a one-column query's first row (`default` if there is no row)."""
        with translated():
            names, values, _ = await self._raw.run(sql, params, fetch=1)
        if len(names) != 1:
            raise ValueError(f"value() needs a query of one column, not {len(names)}: {sql}")
        return values[0][0] if values else default


class SQLiteConnection(aiosqlite.Connection):
    """aiosqlite's connection, with a statement run and read in one trip to its thread (aiosqlite's own
    cursor takes three: execute, fetch, close; each trip is a hand-off through the event loop)."""

    def _run(self, sql: str, params: Sequence[Any], fetch: int) -> tuple[list[str], list[Any], int | None]:
        cursor = self._conn.execute(sql, params)
        try:
            values = cursor.fetchall() if fetch < 0 else cursor.fetchmany(fetch) if fetch else []
            return column_names(cursor.description), values, cursor.lastrowid
        finally:
            cursor.close()

    async def run(
        self, sql: str, params: Sequence[Any], *, fetch: int
    ) -> tuple[list[str], list[Any], int | None]:
        """Column names, rows (all when `fetch` < 0, else up to `fetch`) and the last inserted rowid."""
        result: tuple[list[str], list[Any], int | None] = await self._execute(self._run, sql, params, fetch)
        return result

    async def run_whole(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """`work(conn)` run whole on this connection's thread, its statements in place (daemon/reader_threads.py).
        Waited for even when cancelled: the thread cannot be stopped mid-way, and the caller's slot is
        its until then."""
        with anyio.CancelScope(shield=True):
            result: T = await self._execute(run_here, partial(work, Connection(InPlace(self))))
        await anyio.lowlevel.checkpoint_if_cancelled()  # a caller cancelled meanwhile gives the result up
        return result


class InPlace:
    """A connection's statements run on the calling thread, which must be its own (`run_whole`)."""

    def __init__(self, raw: SQLiteConnection) -> None:
        self._raw = raw

    async def run(
        self, sql: str, params: Sequence[Any], *, fetch: int
    ) -> tuple[list[str], list[Any], int | None]:
        return self._raw._run(sql, params, fetch)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._raw._conn.executemany(sql, rows)


class Store:
    """Owns the database file. Open with `await Store.open(path)`; close with `await store.close()`."""

    dialect = "sqlite"

    def __init__(
        self,
        path: Path,
        writer: SQLiteConnection,
        readers: list[SQLiteConnection],
        long_readers: list[SQLiteConnection] | None = None,
    ) -> None:
        """`readers` serve short reads; `long_readers` (if given) serve `long_read` (and `read(long=True)`),
        else `readers` do."""
        self.path = path
        self._writer = writer
        self._all_readers = readers + (long_readers or [])
        self._write_lock = anyio.Lock()  # protects the writer connection's transaction
        self._pools = {False: ReaderPool(readers)}
        self._pools[True] = ReaderPool(long_readers) if long_readers else self._pools[False]
        # Long reads at work or waiting on each long reader's thread (`long_read`), kept by the event loop.
        self._long_reads = {reader: 0 for reader in long_readers or readers}
        self._closed = False
        # Called with each write's connection: each gives (begun, ending, committed), awaited after BEGIN,
        # before COMMIT and after it, the lock still held (the lexical index records what a write touched).
        self.write_hooks: list[WriteHook] = []

    @classmethod
    async def open(cls, path: Path, *, read_connections: int = 2, check_integrity: bool = True) -> Store:
        """Open (creating if needed) and migrate the database; refuse a file that fails `quick_check`.
        `read_connections` readers serve long reads, and `SHORT_READ_CONNECTIONS` more every other read."""
        private_file(path)  # 0600 in a 0700 folder if new; SQLite gives its -wal and -shm the same mode
        await anyio.to_thread.run_sync(_prepare, path, check_integrity)
        opened: list[SQLiteConnection] = []
        try:
            with translated(path):
                for index in range(1 + read_connections + SHORT_READ_CONNECTIONS):
                    read_only = index > 0  # the first is the writer
                    conn = SQLiteConnection(
                        partial(sqlite_driver.connect, str(path), read_only=read_only), 64
                    )
                    await conn  # aiosqlite's await starts its thread and connects
                    opened.append(conn)
        except BaseException:
            with anyio.CancelScope(shield=True):
                for conn in opened:
                    await conn.close()
            raise
        short = 1 + SHORT_READ_CONNECTIONS
        return cls(path, opened[0], opened[1:short], opened[short:])

    def _check_open(self) -> None:
        if on_reader_thread():  # the pools, the write lock and the counts belong to the daemon's event loop
            raise RuntimeError("a search's reads on a reader's thread cannot read, write or long_read anew")
        if self._closed:
            raise StoreClosed("the store is closed: memosd is shutting down")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Connection]:
        """One atomic write transaction; committed (durably) when the block exits without error."""
        self._check_open()
        with anyio.CancelScope(shield=True):
            async with self._write_lock:
                self._check_open()
                await self._rollback_leftover()
                with translated():
                    await self._writer.execute("BEGIN IMMEDIATE")
                conn = Connection(self._writer)
                try:
                    hooks = [hook(conn) for hook in self.write_hooks]
                    for begun, _, _ in hooks:
                        await begun()
                    yield conn
                    for _, ending, _ in hooks:
                        await ending()
                    with translated():
                        await self._writer.execute("COMMIT")
                except BaseException:
                    await self._rollback()
                    raise
                for _, _, committed in hooks:
                    await committed()
                for callback in conn.committed:
                    callback()

    async def _rollback(self) -> None:
        """Undo the failed transaction, if SQLite has not already (it has after SQLITE_FULL, for one): the
        error that failed the write is the one the caller needs, so a failing ROLLBACK is only logged."""
        if not self._writer.in_transaction:
            return
        try:
            await self._writer.execute("ROLLBACK")
        except sqlite_errors() as exc:
            log.error("ROLLBACK after a failed write failed too (retried before the next write): %s", exc)

    async def _rollback_leftover(self) -> None:
        """A ROLLBACK that failed left a transaction open; end it before starting the next one."""
        if self._writer.in_transaction:
            with translated():
                await self._writer.execute("ROLLBACK")

    @asynccontextmanager
    async def read(self, *, long: bool = False) -> AsyncIterator[Connection]:
        """A reader connection for the duration of the block (a consistent snapshot per statement). `long`:
        one of the readers kept for long reads (searches), which short reads never wait behind."""
        self._check_open()
        async with self._pools[long].lend(lambda: self._closed) as raw:
            yield Connection(raw)

    @property
    def search_slots(self) -> int:
        """Searches at work at once (the fair gate's slots): two per long reader, so that when one search's
        reads end, the next already waits on the reader's thread instead of for the event loop to hand it
        over (daemon/reader_threads.py)."""
        return 2 * len(self._long_reads)

    async def long_read(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """`work(conn)`, a long read (a search's), run whole on the thread of the long reader with the
        fewest at work or waiting (daemon/reader_threads.py): its statements run there in place, each its
        own snapshot as with `read`."""
        self._check_open()
        reader = min(self._long_reads, key=self._long_reads.__getitem__)
        self._long_reads[reader] += 1
        try:
            with translated():
                return await reader.run_whole(work)
        finally:
            self._long_reads[reader] -= 1

    async def claim_turn(self, job: str, every_s: float) -> bool:
        """Whether this daemon runs periodic `job` now. Always: one daemon owns the file (the instance
        lock); a shared database decides among its daemons (daemon/pg_store.py)."""
        self._check_open()
        return True

    async def checkpoint(self) -> None:
        """Fold the WAL back into the main file (on shutdown, and before a backup)."""
        async with self._write_lock:
            self._check_open()
            with translated():
                await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def close(self) -> None:
        """Close every connection; idempotent. In-flight writes finish first (they hold the lock)."""
        if self._closed:
            return
        with anyio.CancelScope(shield=True):
            async with self._write_lock:
                self._closed = True
                try:
                    await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite_errors() as exc:  # the WAL stays beside the file; the next open folds it in
                    log.warning("WAL checkpoint at close failed: %s", exc)
                await self._writer.close()
            for reader in self._all_readers:
                if reader in self._long_reads:
                    await reader._execute(close_here)  # its thread's event loop, if a long read made one
                await reader.close()
            for pool in self._pools.values():
                pool.send.close()
                pool.receive.close()


class ReaderPool(Generic[C]):
    """Idle reader connections: taken from `receive`, handed back to `send`."""

    def __init__(self, readers: list[C]) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[C](len(readers))
        for reader in readers:
            self.send.send_nowait(reader)

    @asynccontextmanager
    async def lend(
        self, closed: Callable[[], bool], usable: Callable[[C], Awaitable[C]] | None = None
    ) -> AsyncIterator[C]:
        """An idle reader for the block, handed back after it unless the store is `closed` by then;
        `usable` may replace it first (a connection the server dropped), and the replacement goes back."""
        try:
            raw = await self.receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StoreClosed("the store is closed: memosd is shutting down") from None
        try:
            if usable is not None:
                raw = await usable(raw)
            yield raw
        finally:
            if not closed():
                self.send.send_nowait(raw)


def _prepare(path: Path, check_integrity: bool) -> None:
    """Check and migrate the file on a short-lived connection, before the pool opens."""
    with translated(path):
        conn = sqlite_driver.connect(str(path))
    try:
        with translated(path):
            checked = read_rows(conn, "PRAGMA quick_check") if check_integrity else []
            problems = [row["quick_check"] for row in checked if row["quick_check"] != "ok"]
            if problems:
                raise StoreCorrupt(f"the database {path} is damaged ({problems[0]}); {CHECK_ADVICE}")
            applied = apply_migrations(conn)
        if applied:
            log.info("database %s migrated to schema version %d", path, applied[-1])
    finally:
        conn.close()
