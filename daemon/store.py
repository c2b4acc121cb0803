"""The embedded store: one SQLite file, one writer connection, a small pool of readers.

Every write runs in `Store.write()`: one `BEGIN IMMEDIATE` transaction on the single writer connection,
serialised by a lock, shielded from cancellation so a started write always commits or rolls back, and
acknowledged only after COMMIT returns (with `synchronous=FULL`, after it is on disk). Reads use their own
connections and never wait for the writer (WAL). sqlite errors are translated to `StoreError`s here, and
nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from daemon import sqlite_driver
from daemon.errors import Conflict, MemosError, StoreClosed, StoreCorrupt, StoreError
from daemon.migrations import apply_migrations
from daemon.private_files import private_file

log = logging.getLogger(__name__)

Row = tuple[Any, ...]


def quote_identifier(name: str) -> str:
    """Quote an SQL identifier; values are always bound, never formatted into SQL."""
    return '"' + name.replace('"', '""') + '"'


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


class Connection:
    """A thin, typed face over one aiosqlite connection."""

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self._raw = raw
        self.committed: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once this write transaction has committed (never if it rolls back): for in-memory
        state that must not run ahead of the database."""
        self.committed.append(callback)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the last inserted rowid."""
        cursor = await self._raw.execute(sql, params)
        rowid = cursor.lastrowid or 0
        await cursor.close()
        return rowid

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._raw.executemany(sql, rows)

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(row) for row in await self._raw.execute_fetchall(sql, params)]

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cursor = await self._raw.execute(sql, params)
        row = await cursor.fetchone()
        await cursor.close()
        return tuple(row) if row is not None else None


class Store:
    """Owns the database file. Open with `await Store.open(path)`; close with `await store.close()`."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, readers: list[aiosqlite.Connection]) -> None:
        self.path = path
        self._writer = writer
        self._all_readers = readers
        self._write_lock = anyio.Lock()  # protects the writer connection's transaction
        self._reader_send, self._reader_receive = anyio.create_memory_object_stream[aiosqlite.Connection](
            len(readers)
        )
        for reader in readers:
            self._reader_send.send_nowait(reader)
        self._closed = False
        self._errors = sqlite_driver.sqlite_module()

    @classmethod
    async def open(cls, path: Path, *, read_connections: int = 2, check_integrity: bool = True) -> Store:
        """Open (creating if needed) and migrate the database; refuse a file that fails `quick_check`."""
        private_file(path)  # 0600 in a 0700 folder if new; SQLite gives its -wal and -shm the same mode
        await anyio.to_thread.run_sync(_prepare, path, check_integrity)
        module = sqlite_driver.sqlite_module()
        opened: list[aiosqlite.Connection] = []
        try:
            opened.append(await aiosqlite.Connection(lambda: sqlite_driver.connect(str(path)), 64))
            for _ in range(read_connections):
                opened.append(
                    await aiosqlite.Connection(lambda: sqlite_driver.connect(str(path), read_only=True), 64)
                )
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                for conn in opened:
                    await conn.close()
            if isinstance(exc, module.Error):
                raise StoreError(f"cannot open the database {path}: {exc}") from exc
            raise
        return cls(path, opened[0], opened[1:])

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed: memosd is shutting down")

    def _translate(self, exc: Exception) -> MemosError:
        if isinstance(exc, self._errors.IntegrityError):
            return Conflict(f"the change conflicts with stored data: {exc}")
        if isinstance(exc, self._errors.OperationalError) and "locked" in str(exc):
            return StoreError("the database is busy (another process holds a write lock); try again")
        return StoreError(f"database error: {exc}")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Connection]:
        """One atomic write transaction; committed (durably) when the block exits without error."""
        self._check_open()
        with anyio.CancelScope(shield=True):
            async with self._write_lock:
                self._check_open()
                await self._writer.execute("BEGIN IMMEDIATE")
                conn = Connection(self._writer)
                try:
                    yield conn
                except BaseException as exc:
                    await self._writer.execute("ROLLBACK")
                    if isinstance(exc, self._errors.Error):
                        raise self._translate(exc) from exc
                    raise
                try:
                    await self._writer.execute("COMMIT")
                except self._errors.Error as exc:
                    await self._writer.execute("ROLLBACK")
                    raise self._translate(exc) from exc
                for callback in conn.committed:
                    callback()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        """A reader connection for the duration of the block (a consistent snapshot per statement)."""
        self._check_open()
        try:
            raw = await self._reader_receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StoreClosed("the store is closed: memosd is shutting down") from None
        try:
            yield Connection(raw)
        except self._errors.Error as exc:
            raise self._translate(exc) from exc
        finally:
            if not self._closed:
                self._reader_send.send_nowait(raw)

    async def checkpoint(self) -> None:
        """Fold the WAL back into the main file (on shutdown, and before a backup)."""
        async with self._write_lock:
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
                except self._errors.Error as exc:
                    log.warning("WAL checkpoint at close failed: %s", exc)
                await self._writer.close()
            for reader in self._all_readers:
                await reader.close()
            self._reader_send.close()
            self._reader_receive.close()


def _open_failure(path: Path, exc: Exception) -> StoreError:
    if "not a database" in str(exc) or "malformed" in str(exc):
        return StoreCorrupt(
            f"{path} is damaged or not a memos database ({exc}); stop memosd, move the file aside and"
            " restore a backup"
        )
    return StoreError(f"cannot open the database {path}: {exc}")


def _prepare(path: Path, check_integrity: bool) -> None:
    """Check and migrate the file on a short-lived connection, before the pool opens."""
    module = sqlite_driver.sqlite_module()
    try:
        conn = sqlite_driver.connect(str(path))
    except module.Error as exc:
        raise _open_failure(path, exc) from exc
    try:
        if check_integrity:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check") if row[0] != "ok"]
            if problems:
                raise StoreCorrupt(
                    f"the database {path} is damaged ({problems[0]}); stop memosd, move the file aside"
                    " and restore a backup"
                )
        applied = apply_migrations(conn)
        if applied:
            log.info("database %s migrated to schema version %d", path, applied[-1])
    except module.Error as exc:
        raise _open_failure(path, exc) from exc
    finally:
        conn.close()
