"""The team store: a PostgreSQL database (with pgvector), shared by one or more memosd.

The same interface and the same semantics as the embedded store (daemon/store.py): every write runs in
`PgStore.write()`, one transaction on the single writer connection, serialised by a lock in this process and
by a transaction-scoped advisory lock across every daemon on the database (so a read-then-write such as the
duplicate check sees every earlier write, whichever daemon made it), shielded from cancellation and
acknowledged only after COMMIT returns (`synchronous_commit` on: after the server has it on disk). Reads use
their own connections in autocommit (one snapshot per statement) and never wait for the writer. Statements
are the core's own, read through `daemon/pg_sql.py`; every psycopg call runs inside `pg_errors.translated()`.
A connection the server dropped (a restart) is replaced before its next use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psycopg
from psycopg.adapt import Loader

from daemon.packed_columns import Kind, Packed, from_columns
from daemon.pg_errors import translated
from daemon.pg_schema import apply_postgres_migrations
from daemon.pg_sql import postgres_sql
from daemon.rows import Row, by_column, column_names
from daemon.store import SHORT_READ_CONNECTIONS, Connection, ReaderPool, Store, T

log = logging.getLogger(__name__)

# The advisory lock every daemon's write transaction takes: writes are serial across the group.
WRITE_LOCK = 0x6D656D6F73  # "memos"


class _NumberLoader(Loader):
    """numeric (what sum() and count() arithmetic give) as int or float, as SQLite returns them."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


def redacted(url: str) -> str:
    """The URL without its password, for logs and messages."""
    return psycopg.conninfo.make_conninfo(url, password="***") if "password" in url or "@" in url else url


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    """A configured connection: autocommit (transactions are explicit), values bound on the client side
    (so loosely typed parameters read as SQLite reads them), numeric read as int or float."""
    with translated():
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, cursor_factory=psycopg.AsyncClientCursor
        )
    conn.adapters.register_loader("numeric", _NumberLoader)
    # A vector search filtered to some cubes keeps walking the HNSW graph until it has its k rows (pgvector
    # 0.8's iterative scan), instead of returning the few of the first candidates that pass the filter.
    with translated():
        await conn.execute("SET hnsw.iterative_scan = strict_order")
        # As SQLite's busy timeout: a write waiting longer for another daemon's fails as StoreBusy (55P03).
        await conn.execute("SET lock_timeout = '10s'")
        # No parallel workers for one statement: the server starts them anew for each (a lexical query
        # matching half of 100k memories got two), which cost a third of the server's CPU per search there
        # and, with several agents searching at once, compete with the other connections' statements.
        await conn.execute("SET max_parallel_workers_per_gather = 0")
    return conn


class PgConnection(Connection):
    """The Connection interface over one psycopg connection."""

    dialect = "postgresql"

    def __init__(self, raw: psycopg.AsyncConnection[Any]) -> None:
        self._pg = raw
        self.committed: list[Callable[[], None]] = []

    async def _run(self, sql: str, params: Sequence[Any], *, returning: bool = False) -> Any:
        cursor = self._pg.cursor()
        await cursor.execute(postgres_sql(sql, returning=returning), list(params))
        return cursor

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the key the database assigned to an inserted row (else 0)."""
        with translated():
            cursor = await self._run(sql, params, returning=True)
            row = await cursor.fetchone() if cursor.description else None
            await cursor.close()
        return int(row[0]) if row is not None and isinstance(row[0], int) else 0

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with translated():
            cursor = self._pg.cursor()
            batch = [list(row) for row in rows]
            if batch:
                await cursor.executemany(postgres_sql(sql), batch)
            await cursor.close()

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with translated():
            cursor = await self._run(sql, params)
            values = await cursor.fetchall()
            names = column_names(cursor.description)
            await cursor.close()
        return Row.many(names, values)

    async def row(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        with translated():
            cursor = await self._run(sql, params)
            values = await cursor.fetchone()
            names = column_names(cursor.description)
            await cursor.close()
        return Row.from_columns(names, values) if values is not None else None

    async def column(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with translated():
            cursor = await self._run(sql, params)
            values = await cursor.fetchall()
            width = len(cursor.description or ())
            await cursor.close()
        if width != 1:
            raise ValueError(f"column() needs a query of one column, not {width}: {sql}")
        return [row[0] for row in values]

    async def columns(self, sql: str, params: Sequence[Any] = ()) -> dict[str, tuple[Any, ...]]:
        with translated():
            cursor = await self._run(sql, params)
            values = await cursor.fetchall()
            names = column_names(cursor.description)
            await cursor.close()
        return by_column(names, values)

    async def packed_columns(self, sql: str, params: Sequence[Any], kinds: Mapping[str, Kind]) -> Packed:
        """As SQLite's, from the rows as they come: psycopg reads a result whole, with no hand-off a row."""
        return from_columns(await self.columns(sql, params), kinds)

    async def value(self, sql: str, params: Sequence[Any] = (), default: Any = None) -> Any:
        with translated():
            cursor = await self._run(sql, params)
            values = await cursor.fetchone()
            width = len(cursor.description or ())
            await cursor.close()
        if width != 1:
            raise ValueError(f"value() needs a query of one column, not {width}: {sql}")
        return values[0] if values is not None else default


class PgStore(Store):
    """Owns the connections to one PostgreSQL database. Open with `await PgStore.open(url)`."""

    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        writer: psycopg.AsyncConnection[Any],
        readers: list[psycopg.AsyncConnection[Any]],
        long_readers: list[psycopg.AsyncConnection[Any]] | None = None,
    ) -> None:
        """`readers` serve short reads; `long_readers` (if given) serve `read(long=True)`, else `readers` do."""
        self.url = url
        self.path = Path(redacted(url))  # named in messages and logs, never opened as a file
        self._pg_writer = writer
        self._pg_all = [writer, *readers, *(long_readers or [])]  # every open connection, for close()
        self._pg_long_readers = long_readers or readers
        self._write_lock = anyio.Lock()  # protects the writer connection's transaction
        self._pg_pools = {False: ReaderPool(readers)}
        self._pg_pools[True] = ReaderPool(long_readers) if long_readers else self._pg_pools[False]
        self._closed = False

    @classmethod
    async def open_url(cls, url: str, *, read_connections: int = 2) -> PgStore:
        """Connect and migrate the database (one daemon at a time: migrations hold an advisory lock)."""
        applied = await anyio.to_thread.run_sync(apply_postgres_migrations, url)
        if applied:
            log.info("database %s migrated to schema version %d", redacted(url), applied[-1])
        opened: list[psycopg.AsyncConnection[Any]] = []
        try:
            for _ in range(1 + SHORT_READ_CONNECTIONS + read_connections):
                opened.append(await connect(url))
        except BaseException:
            with anyio.CancelScope(shield=True):
                for conn in opened:
                    await conn.close()
            raise
        short = 1 + SHORT_READ_CONNECTIONS
        return cls(url, opened[0], opened[1:short], opened[short:])

    async def _usable(self, conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncConnection[Any]:
        """`conn`, or a new connection in its place if the server dropped it."""
        if not conn.closed and not conn.broken:
            return conn
        log.warning("reconnecting to the database (the old connection was dropped)")
        await conn.close()
        fresh = await connect(self.url)
        self._pg_all = [fresh if known is conn else known for known in self._pg_all]
        return fresh

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Connection]:
        """One atomic write transaction; committed (durably) when the block exits without error."""
        self._check_open()
        with anyio.CancelScope(shield=True):
            async with self._write_lock:
                self._check_open()
                writer = await self._begin()
                conn = PgConnection(writer)
                try:
                    with translated():
                        await writer.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])
                    yield conn
                    with translated():
                        await writer.execute("COMMIT")
                except BaseException:
                    await self._pg_rollback(writer)
                    raise
                for callback in conn.committed:
                    callback()

    async def _begin(self) -> psycopg.AsyncConnection[Any]:
        """BEGIN on the writer; a connection the server dropped since its last use (nothing of this write
        sent yet) is replaced and the BEGIN tried once more on the new one."""
        self._pg_writer = await self._usable(self._pg_writer)
        try:
            await self._pg_writer.execute("BEGIN")
        except psycopg.OperationalError:
            if not self._pg_writer.broken:
                raise
            self._pg_writer = await self._usable(self._pg_writer)
            with translated():
                await self._pg_writer.execute("BEGIN")
        return self._pg_writer

    async def _pg_rollback(self, writer: psycopg.AsyncConnection[Any]) -> None:
        """Undo the failed transaction; the error that failed the write is the one the caller needs, so a
        failing ROLLBACK (a dropped connection: the server has rolled back) is only logged."""
        if writer.broken or writer.closed:
            return
        try:
            await writer.execute("ROLLBACK")
        except psycopg.Error as exc:
            log.error("ROLLBACK after a failed write failed too: %s", exc)

    @asynccontextmanager
    async def read(self, *, long: bool = False) -> AsyncIterator[Connection]:
        """A reader connection for the duration of the block (a consistent snapshot per statement). `long`:
        one of the readers kept for long reads (searches), which short reads never wait behind."""
        self._check_open()
        async with self._pg_pools[long].lend(lambda: self._closed, self._usable) as raw:
            yield PgConnection(raw)

    @property
    def search_slots(self) -> int:
        """Searches at work at once: one per long reader, which each holds for its reads."""
        return len(self._pg_long_readers)

    async def long_read(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """`work(conn)` on a long reader lent for it, on the event loop (psycopg's connections are async)."""
        async with self.read(long=True) as conn:
            return await work(conn)

    async def claim_turn(self, job: str, every_s: float) -> bool:
        """Whether this daemon runs periodic `job` now: the first of the daemons to ask once `every_s` (less
        a tenth, for their clocks' drift) has passed since the last run claims it; writes are serial across
        the daemons, so exactly one does."""
        key = f"turn:{job}"
        async with self.write() as conn:
            last = await conn.value("SELECT value FROM meta WHERE key = ?", (key,))
            now = time.time()
            if last is not None and now - float(last) < every_s * 0.9:
                return False
            await conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, repr(now)))
        return True

    async def checkpoint(self) -> None:
        """Nothing to fold: the server manages its own log."""
        self._check_open()

    async def close(self) -> None:
        """Close every connection; idempotent. In-flight writes finish first (they hold the lock)."""
        if self._closed:
            return
        with anyio.CancelScope(shield=True):
            async with self._write_lock:
                self._closed = True
            for conn in self._pg_all:
                await conn.close()
            for pool in self._pg_pools.values():
                pool.send.close()
                pool.receive.close()
