"""Lexical matches on PostgreSQL: the same FTS5-style expressions, answered by its own text search.

The core builds a lexical query as FTS5 writes it: quoted phrases joined by OR (daemon/lexical.py). Here
each phrase becomes a `phraseto_tsquery` over the same 'english' configuration (Snowball stemming) that
fills the `fts` column, the phrases are OR-ed, and the generated `tsvector` column's GIN index finds the
rows. The score is `ts_rank` negated, so that, as with FTS5's BM25, lower is better.
"""

from __future__ import annotations

import re
from typing import Any

from daemon.store import Connection, placeholders

_PHRASE = re.compile(r'"((?:[^"]|"")*)"')


def ts_query(expression: str) -> tuple[str, list[str]]:
    """The tsquery SQL and its parameters for an FTS5 expression of quoted phrases joined by OR."""
    phrases = [match.group(1).replace('""', '"') for match in _PHRASE.finditer(expression)]
    if not phrases:
        phrases = [expression]
    sql = " || ".join("phraseto_tsquery('english', ?)" for _ in phrases)
    return f"({sql})", phrases


async def best_matches(
    conn: Connection, expression: str, cube_ids: list[int], predicate: str, params: list[Any], limit: int
) -> list[tuple[int, float]]:
    """(seq, score) of the `limit` best matches of `expression` among the memories of `cube_ids` that pass
    `predicate` (`AND …` over `m`), best first; the score negative, lower is better."""
    query, phrases = ts_query(expression)
    rows = await conn.rows(
        f"SELECT m.seq, -ts_rank(m.fts, q.query) AS score FROM memories m, (SELECT {query} AS query) q"
        f" WHERE m.fts @@ q.query AND m.cube_id IN ({placeholders(len(cube_ids))}) {predicate}"
        " ORDER BY score, m.seq LIMIT ?",
        [*phrases, *cube_ids, *params, limit],
    )
    return [(row["seq"], row["score"]) for row in rows]
