"""The lexical candidates of a search are exactly FTS5's BM25 ranking of the memories the caller may read,
however they are found (FTS5's own best few first, or every match joined to its memory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import NewMemory, agent_named, open_services
from daemon.bm25 import best_matches
from daemon.filters import MemoryFilter
from daemon.lexical import fts_query
from daemon.store import Connection, placeholders
from tests.conftest import make_config

pytestmark = pytest.mark.anyio

WORDS = ["billing", "service", "decided", "Lena", "search", "index", "deploy", "review", "about", "team"]


def note(i: int) -> str:
    # Every note shares words with many others, so most queries match most notes.
    return f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} {WORDS[(i * 7 + 1) % 10]} note {i}"


async def plain(
    conn: Connection, expression: str, cube_ids: list[int], limit: int
) -> list[tuple[int, float]]:
    predicate, params = MemoryFilter().sql()
    rows = await conn.rows(
        "SELECT m.seq AS seq, bm25(memories_fts) AS score FROM memories_fts JOIN memories m ON m.seq = memories_fts.rowid"
        f" WHERE memories_fts MATCH ? AND m.cube_id IN ({placeholders(len(cube_ids))}) {predicate}"
        " ORDER BY bm25(memories_fts) LIMIT ?",
        [expression, *cube_ids, *params, limit],
    )
    return [(row["seq"], row["score"]) for row in rows]


def same(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [round(score, 9) for _, score in got] == [round(score, 9) for _, score in expected]
    # Rows of equal score may come in either order; every row scores as in the plain query.
    ties = {score for _, score in expected}
    assert {seq for seq, _ in got} == {seq for seq, _ in expected} or all(score in ties for _, score in got)


async def test_best_matches_equal_the_plain_ranking_in_one_cube_in_several_and_with_most_rows_filtered(
    tmp_path: Path,
) -> None:
    """Steps: alice writes 400 notes in her cube, bob 200 in his. For alice's cube alone and bob's alone
    (another cube holds memories: every match is joined and filtered) and for both (every cube: FTS5's best
    few first), with several queries and limits, the candidates equal the plain query's. Then a third of
    alice's first 300 notes and all her last 100 are deleted, so that FTS5's best few are often filtered
    out and the search must fall back: still equal."""
    async with open_services(make_config(tmp_path, "none")) as services:
        await services.identities.add("alice")
        await services.identities.add("bob")
        alice, bob = agent_named("alice"), agent_named("bob")
        added = await services.additions.add_batch(
            alice, None, [NewMemory(content=note(i)) for i in range(400)]
        )
        await services.additions.add_batch(bob, None, [NewMemory(content=note(i + 400)) for i in range(200)])
        async with services.store.read() as conn:
            cubes = {
                row["name"]: row["id"]
                for row in await conn.rows("SELECT name, id FROM cubes WHERE name IN ('@alice', '@bob')")
            }
        queries = [
            "What did Lena decide about the billing service?",
            "search index deploy",
            "team review note",
        ]
        for deleting in (False, True):
            if deleting:
                for memory_id in added.ids[:300:3] + added.ids[300:]:
                    await services.memories.delete(alice, memory_id)
            async with services.store.read() as conn:
                for text in queries:
                    expression = fts_query(text)
                    assert expression is not None
                    predicate, params = MemoryFilter().sql()
                    for scope in ([cubes["@alice"]], [cubes["@alice"], cubes["@bob"]], [cubes["@bob"]]):
                        for limit in (1, 10, 100, 1000):
                            got = await best_matches(conn, expression, scope, predicate, params, limit)
                            same(got, await plain(conn, expression, scope, limit))
