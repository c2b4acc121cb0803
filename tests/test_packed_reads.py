"""A packed read (daemon/packed_columns.py): one row for a long read, giving back exactly what a read row by
row gives, on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from daemon import MemosError
from daemon.packed_columns import Kind, packed_sql
from daemon.pg_store import PgStore
from daemon.store import Store
from tests.pg_server import PgCluster

pytestmark = pytest.mark.anyio

TEXTS = [
    "plain",
    'quote " and \\ backslash',
    "line\nbreak\ttab\x01",
    "ünïcødé ✓ 𝄞",
    '{"looks": ["like", "json"]}',
    "",
]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened: Store = await Store.open(tmp_path / "m.db")
        yield opened
        await opened.close()
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    with cluster.database(migrated=False) as url:
        opened = await PgStore.open_url(url)
        yield opened
        await opened.close()


async def _filled(store: Store, rows: Sequence[tuple[int, object, bytes | None]]) -> None:
    blob = "BLOB" if store.dialect == "sqlite" else "BYTEA"
    async with store.write() as conn:
        await conn.execute(f"CREATE TABLE t (seq INTEGER PRIMARY KEY, note TEXT, payload {blob})")
        for seq, note, payload in rows:
            await conn.execute("INSERT INTO t (seq, note, payload) VALUES (?, ?, ?)", [seq, note, payload])


async def test_a_packed_read_gives_each_rows_values_and_blobs_in_one_order(store: Store) -> None:
    rows = [
        (seq, TEXTS[seq % len(TEXTS)] if seq % 7 else None, struct.pack("<4f", seq, -seq, 0.5, seq / 3))
        for seq in range(1, 301)
    ]
    await _filled(store, rows)
    async with store.read() as conn:
        found = await conn.packed_columns(
            "SELECT seq, note, payload FROM t WHERE seq > ?",
            [0],
            {"seq": "value", "note": "value", "payload": "blob"},
        )
    assert found.count == 300
    expected = {seq: (note, payload) for seq, note, payload in rows}
    width = len(found.blobs["payload"]) // found.count
    assert width == 16
    for index, seq in enumerate(found.values["seq"]):
        note, payload = expected[seq]
        assert found.values["note"][index] == note
        assert found.blobs["payload"][index * width : (index + 1) * width] == payload
    assert sorted(found.values["seq"]) == list(range(1, 301))


async def test_a_packed_read_of_nothing_is_empty(store: Store) -> None:
    await _filled(store, [(1, "a", b"x")])
    async with store.read() as conn:
        found = await conn.packed_columns(
            "SELECT seq, payload FROM t WHERE seq > ?", [5], {"seq": "value", "payload": "blob"}
        )
    assert (found.count, found.values, found.blobs) == (0, {"seq": []}, {"payload": b""})


async def test_a_float_comes_back_bit_for_bit(store: Store) -> None:
    """JSON would keep 15 digits of these; the read is made row by row instead."""
    floats = [0.1 + 0.2, 1e-300 / 3, 2.0 / 3, 7.609624449125756e182]
    async with store.write() as conn:
        await conn.execute("CREATE TABLE f (seq INTEGER PRIMARY KEY, x DOUBLE PRECISION)")
        for seq, value in enumerate(floats):
            await conn.execute("INSERT INTO f (seq, x) VALUES (?, ?)", [seq, value])
    async with store.read() as conn:
        found = await conn.packed_columns("SELECT seq, x FROM f", [], {"seq": "value", "x": "value"})
    back = dict(zip(found.values["seq"], found.values["x"], strict=True))
    assert [struct.pack("<d", back[seq]) for seq in range(len(floats))] == [
        struct.pack("<d", x) for x in floats
    ]


async def test_blobs_of_different_widths_are_refused_naming_the_column(store: Store) -> None:
    await _filled(store, [(1, "a", b"four"), (2, "b", b"three")])
    async with store.read() as conn:
        with pytest.raises(ValueError, match="'payload' holds blobs of different widths"):
            await conn.packed_columns("SELECT seq, payload FROM t", [], {"seq": "value", "payload": "blob"})


async def test_a_null_in_a_blob_column_is_refused_not_left_out(store: Store) -> None:
    await _filled(store, [(1, "a", b"four"), (2, "b", None), (3, "c", b"more")])
    async with store.read() as conn:
        with pytest.raises(ValueError, match="'payload' holds values that are not blobs"):
            await conn.packed_columns("SELECT seq, payload FROM t", [], {"seq": "value", "payload": "blob"})


async def test_a_key_column_groups_the_rows_and_keeps_each_float_as_stored(store: Store) -> None:
    """A memory's importance: few distinct floats, each read as stored (one packed row a value)."""
    weights = [0.1 + 0.2, 0.5, 1e-300 / 3, 0.5, 2.0 / 3]
    async with store.write() as conn:
        await conn.execute("CREATE TABLE k (seq INTEGER PRIMARY KEY, note TEXT, weight DOUBLE PRECISION)")
        for seq in range(200):
            await conn.execute(
                "INSERT INTO k (seq, note, weight) VALUES (?, ?, ?)",
                [seq, f"note {seq}", weights[seq % len(weights)]],
            )
    kinds: dict[str, Kind] = {"seq": "value", "note": "value", "weight": "key"}
    async with store.read() as conn:
        found = await conn.packed_columns("SELECT seq, note, weight FROM k", [], kinds)
        nothing = await conn.packed_columns("SELECT seq, note, weight FROM k WHERE seq < ?", [0], kinds)
    assert found.count == 200
    rows = zip(found.values["seq"], found.values["note"], found.values["weight"], strict=True)
    assert sorted(rows) == sorted((seq, f"note {seq}", weights[seq % len(weights)]) for seq in range(200))
    assert {struct.pack("<d", weight) for weight in found.values["weight"]} == {
        struct.pack("<d", weight) for weight in weights
    }
    assert (nothing.count, nothing.values) == (0, {"seq": [], "note": [], "weight": []})


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "m.db")
    yield opened
    await opened.close()


async def test_json_a_query_extracts_comes_back_as_its_text(sqlite_store: Store) -> None:
    """As the candidates' places read a turn's role: an object or a list in the metadata is text, as a read row
    by row gives it (SQLite before 3.45 would put it into the array as JSON)."""
    store = sqlite_store
    roles = ['{"x": 1}', '["a", "b"]', '"user"', "null"]
    async with store.write() as conn:
        await conn.execute("CREATE TABLE j (seq INTEGER PRIMARY KEY, metadata TEXT)")
        for seq, role in enumerate(roles):
            await conn.execute("INSERT INTO j (seq, metadata) VALUES (?, ?)", [seq, f'{{"role": {role}}}'])
    sql = "SELECT seq, CASE WHEN seq >= 0 THEN json_extract(metadata, '$.role') END AS role FROM j"
    async with store.read() as conn:
        found = await conn.packed_columns(sql, [], {"seq": "value", "role": "value"})
        row_by_row = await conn.columns(sql)
    assert dict(zip(found.values["seq"], found.values["role"], strict=True)) == dict(
        zip(row_by_row["seq"], row_by_row["role"], strict=True)
    )
    assert dict(zip(found.values["seq"], found.values["role"], strict=True)) == {
        0: '{"x":1}',
        1: '["a","b"]',
        2: "user",
        3: None,
    }


async def test_a_blob_in_a_value_column_comes_back_as_bytes(store: Store) -> None:
    await _filled(store, [(1, "a", b"\x00\xff"), (2, "b", b"ok")])
    async with store.read() as conn:
        found = await conn.packed_columns(
            "SELECT seq, payload FROM t", [], {"seq": "value", "payload": "value"}
        )
    assert dict(zip(found.values["seq"], found.values["payload"], strict=True)) == {1: b"\x00\xff", 2: b"ok"}


async def test_a_name_the_query_does_not_give_is_an_error_not_a_string(store: Store) -> None:
    await _filled(store, [(1, "a", b"x")])
    async with store.read() as conn:
        with pytest.raises((MemosError, ValueError), match="xx"):
            await conn.packed_columns("SELECT seq FROM t", [], {"seq": "value", "xx": "value"})


async def test_key_values_of_two_storage_classes_are_two_groups(sqlite_store: Store) -> None:
    """Only SQLite keeps 1 and 1.0 in one column; NOCASE would make 'A' and 'a' one group."""
    store = sqlite_store
    async with store.write() as conn:
        await conn.execute("CREATE TABLE d (seq INTEGER PRIMARY KEY, key)")  # no affinity: 1.0 stays a float
        for seq, key in enumerate([1, 1.0, "A", "a", None]):
            await conn.execute("INSERT INTO d (seq, key) VALUES (?, ?)", [seq, key])
    async with store.read() as conn:
        found = await conn.packed_columns(
            "SELECT seq, key COLLATE NOCASE AS key FROM d", [], {"seq": "value", "key": "key"}
        )
    back = dict(zip(found.values["seq"], found.values["key"], strict=True))
    assert [(back[seq], type(back[seq])) for seq in range(5)] == [
        (1, int),
        (1.0, float),
        ("A", str),
        ("a", str),
        (None, type(None)),
    ]


def test_a_column_name_the_packing_uses_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot have a column named '__rows'"):
        packed_sql("SELECT 1 AS __rows", {"__rows": "value"})
