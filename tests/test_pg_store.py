"""The PostgreSQL store on a real server: migrations from the one list, the write and read semantics of the
embedded store, several stores (daemons) on one database, errors translated by SQLSTATE, the SQL dialect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import anyio
import msgspec
import numpy as np
import psycopg
import pytest

from daemon import Conflict, StoreBusy, StoreClosed, open_services
from daemon.events import AgentRevoked, Change, CubesChanged, MemoryChanged, PackReady, TaskChanged
from daemon.migrations import MIGRATIONS
from daemon.pg_bus import decode, encode
from daemon.pg_errors import CLASSES, translate
from daemon.pg_sql import postgres_sql
from daemon.pg_store import PgStore
from tests.conftest import REPO, make_config
from tests.pg_server import PgCluster

pytestmark = pytest.mark.anyio


@pytest.fixture
def url(pg_cluster: PgCluster):  # type: ignore[no-untyped-def]
    with pg_cluster.database(migrated=False) as found:
        yield found


async def test_opening_an_empty_database_applies_every_migration_once(url: str) -> None:
    store = await PgStore.open_url(url)
    async with store.write() as conn:
        await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    await store.close()
    store = await PgStore.open_url(url)
    async with store.read() as conn:
        versions = [
            row["version"] for row in await conn.rows("SELECT version FROM schema_migrations ORDER BY 1")
        ]
        assert await conn.value("SELECT value FROM meta WHERE key = 'k'") == "v"
    await store.close()
    assert versions == [version for version, _, _ in MIGRATIONS]


async def test_a_column_is_every_rows_one_value_as_on_sqlite(url: str) -> None:
    store = await PgStore.open_url(url)
    async with store.write() as conn:
        await conn.execute("INSERT INTO meta (key, value) VALUES ('b', '2'), ('a', '1')")
    async with store.read() as conn:
        assert await conn.column("SELECT key FROM meta WHERE key IN ('a', 'b') ORDER BY key") == ["a", "b"]
        assert await conn.column("SELECT key FROM meta WHERE key = 'none'") == []
        with pytest.raises(ValueError, match="one column, not 2"):
            await conn.column("SELECT key, value FROM meta")
    await store.close()


async def test_columns_are_every_rows_values_by_column_name_as_on_sqlite(url: str) -> None:
    store = await PgStore.open_url(url)
    async with store.write() as conn:
        await conn.execute("INSERT INTO meta (key, value) VALUES ('b', '2'), ('a', '1')")
    async with store.read() as conn:
        found = await conn.columns(
            "SELECT key AS k, value AS v FROM meta WHERE key IN ('a', 'b') ORDER BY key"
        )
        assert found == {"k": ("a", "b"), "v": ("1", "2")}
        assert await conn.columns("SELECT key AS a, value AS b FROM meta WHERE key = 'none'") == {
            "a": (),
            "b": (),
        }
        with pytest.raises(ValueError, match=r"two columns named \['a'\]; alias them"):
            await conn.columns("SELECT key AS a, value AS a FROM meta")
    await store.close()


async def test_a_failed_write_block_rolls_back_everything_in_it_and_skips_its_after_commit(url: str) -> None:
    store = await PgStore.open_url(url)
    ran: list[str] = []
    with pytest.raises(Conflict):
        async with store.write() as conn:
            conn.after_commit(lambda: ran.append("rolled back"))
            await conn.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
            await conn.execute("INSERT INTO meta (key, value) VALUES ('a', '2')")  # duplicate key
    async with store.write() as conn:
        conn.after_commit(lambda: ran.append("committed"))
        await conn.execute("INSERT INTO meta (key, value) VALUES ('b', '1')")
    async with store.read() as conn:
        assert [row["key"] for row in await conn.rows("SELECT key FROM meta")] == ["b"]
    await store.close()
    assert ran == ["committed"]


async def test_a_read_does_not_wait_for_an_open_write_and_sees_only_what_committed(url: str) -> None:
    store = await PgStore.open_url(url)
    async with store.write() as conn:
        await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'old')")
        async with store.read() as reader:
            await conn.execute("UPDATE meta SET value = 'new' WHERE key = 'k'")
            with anyio.fail_after(10):
                assert await reader.value("SELECT value FROM meta WHERE key = 'k'") is None
    async with store.read() as reader:
        assert await reader.value("SELECT value FROM meta WHERE key = 'k'") == "new"
    await store.close()


async def test_writes_through_two_stores_on_one_database_are_serial_and_lose_no_update(url: str) -> None:
    """Two daemons: each write reads a counter and writes it back plus one; none is lost."""
    first, second = await PgStore.open_url(url), await PgStore.open_url(url)
    async with first.write() as conn:
        await conn.execute("INSERT INTO meta (key, value) VALUES ('n', '0')")

    async def bump(store: PgStore) -> None:
        for _ in range(20):
            async with store.write() as conn:
                n = int(await conn.value("SELECT value FROM meta WHERE key = 'n'"))
                await anyio.lowlevel.checkpoint()
                await conn.execute("UPDATE meta SET value = ? WHERE key = 'n'", (str(n + 1),))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(bump, first)
            tg.start_soon(bump, second)
    async with second.read() as conn:
        assert await conn.value("SELECT value FROM meta WHERE key = 'n'") == "40"
    await first.close()
    await second.close()


async def test_no_connection_of_the_store_starts_parallel_workers_for_a_statement(url: str) -> None:
    store = await PgStore.open_url(url)
    try:
        async with store.write() as conn:
            assert await conn.value("SELECT current_setting('max_parallel_workers_per_gather')") == "0"
        for _ in range(3):  # each reader connection in turn
            async with store.read() as conn:
                assert await conn.value("SELECT current_setting('max_parallel_workers_per_gather')") == "0"
    finally:
        await store.close()


async def test_an_inserted_rows_assigned_key_is_returned(url: str) -> None:
    store = await PgStore.open_url(url)
    async with store.write() as conn:
        first = await conn.execute("INSERT INTO groups (name, created_at) VALUES (?, ?)", ("a", "t"))
        second = await conn.execute("INSERT INTO groups (name, created_at) VALUES (?, ?)", ("b", "t"))
        assert await conn.value("SELECT id FROM groups WHERE name = 'b'") == second == first + 1
    await store.close()


async def test_connections_the_server_dropped_are_replaced_and_no_write_is_lost(
    url: str, pg_cluster: PgCluster
) -> None:
    """A server restart or a DBA's pg_terminate_backend: the next write reconnects before it begins; a read
    on a dropped connection fails at most once, as retryable (StoreBusy), and the next one reconnects."""
    store = await PgStore.open_url(url, read_connections=1)
    database = url.split("/")[-1].split("?")[0]
    with psycopg.connect(pg_cluster.url(), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
    async with store.write() as conn:
        await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'kept')")
    for attempt in (1, 2):
        try:
            async with store.read() as conn:
                assert await conn.value("SELECT value FROM meta WHERE key = 'k'") == "kept"
            break
        except StoreBusy as exc:
            assert attempt == 1 and "check that PostgreSQL is running" in str(exc)
    await store.close()


async def test_using_a_closed_store_says_so_and_closing_twice_is_harmless(url: str) -> None:
    store = await PgStore.open_url(url)
    await store.close()
    await store.close()
    with pytest.raises(StoreClosed):
        async with store.read():
            pass
    with pytest.raises(StoreClosed):
        async with store.write():
            pass


async def test_a_server_that_is_not_there_is_a_clear_retryable_error(tmp_path: Path) -> None:
    with pytest.raises(StoreBusy, match=r"check that PostgreSQL is running and `\[storage\] url` names it"):
        await PgStore.open_url(f"postgresql://nobody@/memos?host={tmp_path}&connect_timeout=2")


def test_every_sqlstate_class_is_translated_to_one_of_our_errors() -> None:
    known = {code[:2] for code in psycopg.errors._sqlcodes if len(code) == 5 and code.upper() == code}
    assert known - set(CLASSES) == set()
    assert isinstance(translate(psycopg.errors.lookup("23505")("dup")), Conflict)
    assert isinstance(translate(psycopg.errors.lookup("40001")("serialization")), StoreBusy)


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        ("SELECT a FROM t WHERE b = ? AND c LIKE 'x%'", "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%'"),
        ("SELECT '?' FROM t WHERE b = ?", "SELECT '?' FROM t WHERE b = %s"),
        (
            "INSERT OR IGNORE INTO group_members (group_id, agent) VALUES (?, ?)",
            "INSERT INTO group_members (group_id, agent) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        ),
        (
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        ),
        ("SELECT seq FROM memories INDEXED BY memories_by_cube WHERE x", "SELECT seq FROM memories WHERE x"),
        (
            "SELECT id FROM memories ORDER BY seq LIMIT -1 OFFSET ?",
            "SELECT id FROM memories ORDER BY seq LIMIT ALL OFFSET %s",
        ),
    ],
)
def test_the_dialect_rewrites_only_what_postgresql_reads_differently(sqlite: str, postgres: str) -> None:
    assert postgres_sql(sqlite) == postgres


def test_an_insert_into_a_table_with_an_assigned_key_returns_it() -> None:
    assert postgres_sql("INSERT INTO cubes (name) VALUES (?)", returning=True).endswith(" RETURNING id")
    assert "RETURNING" not in postgres_sql("INSERT INTO meta (key, value) VALUES (?, ?)", returning=True)


async def test_of_several_daemons_asking_for_a_periodic_jobs_turn_exactly_one_gets_it(url: str) -> None:
    stores = [await PgStore.open_url(url) for _ in range(3)]
    claimed: list[bool] = []

    async def ask(store: PgStore) -> None:
        claimed.append(await store.claim_turn("retention", 600))

    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(ask, store)
    assert sorted(claimed) == [False, False, True]
    assert await stores[0].claim_turn("retention", 600) is False  # nor again within the interval
    assert await stores[0].claim_turn("backups", 600) is True  # another job has its own turns
    for store in stores:
        await store.close()


async def test_a_database_vector_search_filtered_to_a_small_cube_is_not_starved(
    tmp_path: Path, model_dir: Path, pg_cluster: PgCluster
) -> None:
    """Without the in-memory cache the HNSW index answers: 2,000 vectors in one cube, 5 in another; the 5
    nearest in the small cube are all found, best first, though the index's first candidates are all in
    the big one."""
    rng = np.random.default_rng(7)

    def unit(rows: int) -> np.ndarray:
        vectors = rng.normal(size=(rows, 384)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    with pg_cluster.database() as url:
        config = make_config(tmp_path, str(model_dir), url=url)
        config = msgspec.structs.replace(
            config, search=msgspec.structs.replace(config.search, vector_cache=False)
        )
        async with open_services(config) as services:
            await services.vectors.attached.wait()
            big, small = unit(2000), unit(5)
            async with services.store.write() as conn:
                await services.vectors.put(conn, [(seq, 1, big[seq]) for seq in range(2000)])
                await services.vectors.put(conn, [(10_000 + i, 2, small[i]) for i in range(5)])
            query = big[0]
            async with services.store.read() as conn:
                found = await services.vectors.nearest(conn, query, [2], 5)
    expected = sorted(range(5), key=lambda i: -float(small[i] @ query))
    assert [seq for seq, _ in found] == [10_000 + i for i in expected]


def test_every_change_event_crosses_between_daemons_unchanged() -> None:
    """The relay (daemon/pg_bus.py) knows every kind of change the hub carries, and a NOTIFY payload (at
    most 8000 bytes) holds each."""
    examples = [
        MemoryChanged("@alice", "mem_1"),
        TaskChanged("task_1", ("alice", "bob")),
        PackReady("task_1", "bob"),
        CubesChanged("team"),
        CubesChanged(),
        AgentRevoked("carol"),
    ]
    assert {type(change) for change in examples} == set(get_args(Change))
    for change in examples:
        payload = encode(change)
        assert len(payload.encode()) < 8000
        assert decode(payload) == change


def test_the_embedded_default_never_imports_psycopg() -> None:
    """psycopg is an optional extra: memosd and memos on a SQLite file load nothing of it."""
    probe = (
        "import sys, daemon.lifecycle, memos_cli.memos, memos_cli.memosd, mcp_server.app;"
        " print('psycopg' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr
