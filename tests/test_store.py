"""The store: extension loading on any interpreter, migrations, atomic durable writes, clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import Conflict, StoreClosed, StoreCorrupt
from daemon.migrations import MIGRATIONS
from daemon.sqlite_driver import sqlite_module
from daemon.store import Store

pytestmark = pytest.mark.anyio


def test_the_chosen_sqlite_loads_sqlite_vec_and_has_fts5(tmp_path: Path) -> None:
    from daemon.sqlite_driver import connect

    conn = connect(str(tmp_path / "x.db"))
    assert conn.execute("SELECT vec_version()").fetchone()[0].startswith("v")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    conn.close()


def test_an_interpreter_without_extension_loading_falls_back_to_sqlean() -> None:
    import sqlite3

    module = sqlite_module()
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        assert module.__name__.startswith("sqlean")


async def test_opening_creates_the_file_and_records_every_migration(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sub" / "m.db")
    async with store.read() as conn:
        versions = [row["version"] for row in await conn.rows("SELECT version FROM schema_migrations")]
        mode = await conn.value("PRAGMA journal_mode")
    await store.close()
    assert versions == [version for version, _, _ in MIGRATIONS]
    assert mode == "wal"


async def test_reopening_applies_nothing_twice_and_keeps_data(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "m.db")
    async with store.write() as conn:
        await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    await store.close()
    store = await Store.open(tmp_path / "m.db")
    async with store.read() as conn:
        assert await conn.value("SELECT value FROM meta WHERE key = 'k'") == "v"
        assert await conn.value("SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)
    await store.close()


async def test_a_failed_write_block_rolls_back_everything_in_it(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "m.db")
    with pytest.raises(Conflict):
        async with store.write() as conn:
            await conn.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
            await conn.execute("INSERT INTO meta (key, value) VALUES ('a', '2')")  # duplicate key
    async with store.read() as conn:
        assert await conn.rows("SELECT * FROM meta") == []
    await store.close()


async def test_using_a_closed_store_says_so_and_closing_twice_is_harmless(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "m.db")
    await store.close()
    await store.close()
    with pytest.raises(StoreClosed):
        async with store.read():
            pass
    with pytest.raises(StoreClosed):
        async with store.write():
            pass


async def test_a_file_that_is_not_a_database_is_refused_with_restore_advice(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    path.write_bytes(b"this is not sqlite" * 1000)
    with pytest.raises(StoreCorrupt, match="restore a backup"):
        await Store.open(path)
