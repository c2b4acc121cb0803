"""The best BM25 matches of a lexical query among the memories a search may read.

FTS5 ranks every row that matches before it can sort them. Joined to `memories` for the caller's cubes and
filters, that is also one row lookup per matching row: for "What did Lena decide about the billing
service?" at 100k memories, half the collection. When the caller may read every cube that holds memories
(one user's memories: the usual case), the cube filter keeps every row and the other filters (expired,
superseded, deleted) few enough: then FTS5 ranks on its own, keeping only its best few in its sorter, and
only those are looked up and filtered. If too few of them pass, the plain query runs. Either way the answer
is the plain query's (ties aside).
"""

from __future__ import annotations

from typing import Any

from daemon import pg_text
from daemon.store import Connection, placeholders

__all__ = ["best_matches"]


def _fetched(limit: int) -> int:
    """How many of FTS5's best to look up so that `limit` pass the filters in the usual case."""
    return limit * 2 + 20


async def best_matches(
    conn: Connection,
    expression: str,
    cube_ids: list[int],
    predicate: str,
    params: list[Any],
    limit: int,
    *,
    try_top: bool = True,
) -> list[tuple[int, float]]:
    """(seq, BM25) of the `limit` best matches of the FTS5 `expression` among the memories of `cube_ids`
    that pass `predicate` (`AND …` over `m`), best first; BM25 as FTS5 gives it (negative: lower is better).
    `try_top`: try FTS5's best few first (False when the predicate may leave out most memories)."""
    if conn.dialect == "postgresql":  # its own text search, not FTS5
        return await pg_text.best_matches(conn, expression, cube_ids, predicate, params, limit)
    where = f"m.cube_id IN ({placeholders(len(cube_ids))}) {predicate}"
    if try_top and await _reads_every_cube(conn, cube_ids):
        rows = await conn.rows(
            "SELECT m.seq, best.score FROM ("
            " SELECT rowid, bm25(memories_fts) AS score FROM memories_fts WHERE memories_fts MATCH ?"
            " ORDER BY score LIMIT ?"
            f") best JOIN memories m ON m.seq = best.rowid WHERE {where} ORDER BY best.score LIMIT ?",
            [expression, _fetched(limit), *cube_ids, *params, limit],
        )
        if len(rows) == limit:  # enough of FTS5's best passed: no row below them can come first
            return [(row["seq"], row["score"]) for row in rows]
    rows = await conn.rows(
        "SELECT m.seq, bm25(memories_fts) AS score FROM memories_fts JOIN memories m ON m.seq = memories_fts.rowid"
        f" WHERE memories_fts MATCH ? AND {where} ORDER BY bm25(memories_fts) LIMIT ?",
        [expression, *cube_ids, *params, limit],
    )
    return [(row["seq"], row["score"]) for row in rows]


async def _reads_every_cube(conn: Connection, cube_ids: list[int]) -> bool:
    """True when no cube outside `cube_ids` holds a memory (one index probe per other cube)."""
    other = await conn.value(
        f"SELECT 1 FROM cubes c WHERE c.id NOT IN ({placeholders(len(cube_ids))})"
        " AND EXISTS (SELECT 1 FROM memories m WHERE m.cube_id = c.id) LIMIT 1",
        cube_ids,
    )
    return other is None
