"""The core reads rows by column name: a column added to a SELECT can never shift another's meaning."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import anyio
import pytest

from daemon.rows import Row, read_row_pages
from daemon.store import Store

REPO = Path(__file__).resolve().parents[1]

# The stores and the row type implement the reading.
IMPLEMENTATION = {"store.py", "pg_store.py", "rows.py"}
TUPLE_READS = {"fetch_all", "fetch_one", "fetchone", "fetchall", "fetchmany", "execute_fetchall"}


def test_a_row_is_read_by_name_and_refuses_positions() -> None:
    row = Row.from_columns(["seq", "content"], (7, "hello"))
    assert row["content"] == "hello"
    assert dict(row) == {"seq": 7, "content": "hello"}
    with pytest.raises(TypeError, match=r"by column name, not by position \(0\); columns: seq, content"):
        row[0]  # type: ignore[index]
    with pytest.raises(TypeError, match="cannot be unpacked or iterated"):
        _seq, _content = row
    with pytest.raises(KeyError, match="no column 'cube' in this row; columns: seq, content"):
        row["cube"]


def test_two_columns_of_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match=r"two columns named \['id'\]; alias them"):
        Row.from_columns(["id", "id"], (1, 2))


def test_the_store_hands_out_rows_by_name(tmp_path: Path) -> None:
    async def main() -> None:
        store = await Store.open(tmp_path / "memos.db")
        try:
            async with store.read() as conn:
                rows = await conn.rows("SELECT name, id FROM cubes ORDER BY id")
                assert rows == [] or isinstance(rows[0], Row)
                row = await conn.row("SELECT 1 AS one, 'x' AS letter")
                assert row is not None and row["letter"] == "x"
                with pytest.raises(TypeError):
                    row[0]  # type: ignore[index]
                assert await conn.row("SELECT 1 WHERE 0") is None
                assert await conn.value("SELECT count(*) FROM cubes WHERE 0") == 0
                assert await conn.value("SELECT 1 WHERE 0", default="none") == "none"
                with pytest.raises(ValueError, match="one column, not 2"):
                    await conn.value("SELECT 1, 2")
        finally:
            await store.close()

    anyio.run(main)


def test_a_column_is_every_rows_one_value_and_rows_refuse_twin_names(tmp_path: Path) -> None:
    async def main() -> None:
        store = await Store.open(tmp_path / "memos.db")
        try:
            async with store.read() as conn:
                assert await conn.column("SELECT value FROM json_each('[3, 1, 2]')") == [3, 1, 2]
                assert await conn.column("SELECT 1 WHERE 0") == []
                with pytest.raises(ValueError, match="one column, not 2"):
                    await conn.column("SELECT 1, 2")
                with pytest.raises(ValueError, match=r"two columns named \['a'\]; alias them"):
                    await conn.rows("SELECT value AS a, key AS a FROM json_each('[1, 2]')")
                assert await conn.rows("SELECT 1 AS a, 2 AS a WHERE 0") == []
                rows = await conn.rows("SELECT key AS k, value AS v FROM json_each('[5, 6]')")
                assert [(row["k"], row["v"]) for row in rows] == [(0, 5), (1, 6)]
        finally:
            await store.close()

    anyio.run(main)


def test_columns_are_every_rows_values_by_column_name(tmp_path: Path) -> None:
    """`columns` reads a long result column-wise, by name, in row order; twin names are refused as rows
    refuse them, and an empty result still names its columns."""

    async def main() -> None:
        store = await Store.open(tmp_path / "memos.db")
        try:
            async with store.read() as conn:
                found = await conn.columns("SELECT key AS k, value AS v FROM json_each('[5, 6, 7]')")
                assert found == {"k": (0, 1, 2), "v": (5, 6, 7)}
                assert await conn.columns("SELECT 1 AS a, 2 AS b WHERE 0") == {"a": (), "b": ()}
                with pytest.raises(ValueError, match=r"two columns named \['a'\]; alias them"):
                    await conn.columns("SELECT value AS a, key AS a FROM json_each('[1, 2]')")
        finally:
            await store.close()

    anyio.run(main)


def _tuple_reads(path: Path) -> list[str]:
    """Calls in `path` that yield rows by position: the legacy tuple methods, DB-API fetches, and a raw
    cursor's rows used directly (iterated, unpacked or indexed: `for a, b in conn.execute(...)`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in TUPLE_READS
        ):
            found.append(f"{path.name}:{node.lineno} .{node.func.attr}()")
        iterated = (
            node.iter
            if isinstance(node, ast.For | ast.comprehension)
            else node.value
            if isinstance(node, ast.Subscript)
            else None
        )
        if (
            isinstance(iterated, ast.Call)
            and isinstance(iterated.func, ast.Attribute)
            and iterated.func.attr == "execute"
        ):
            found.append(f"{path.name}:{iterated.lineno} rows of .execute() read directly")
    return found


def test_the_core_reads_no_row_by_position() -> None:
    """Every module of daemon/ reads rows through Connection.rows/row/value or daemon.rows.read_rows, whose
    rows refuse positions; only the stores and the row type touch cursors."""
    offenders = []
    for path in sorted((REPO / "daemon").rglob("*.py")):
        if path.name in IMPLEMENTATION:
            continue
        offenders += _tuple_reads(path)
    assert offenders == []


def test_row_pages_hand_out_every_row_by_name_a_page_at_a_time() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, content TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"text {i}") for i in range(5)])
        pages = list(
            read_row_pages(conn, "SELECT seq, content FROM t WHERE seq >= ? ORDER BY seq", (1,), page=2)
        )
        assert [len(page) for page in pages] == [2, 2]
        assert [row["content"] for page in pages for row in page] == ["text 1", "text 2", "text 3", "text 4"]
        with pytest.raises(TypeError):
            pages[0][0][0]  # type: ignore[index]
    finally:
        conn.close()
