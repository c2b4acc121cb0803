"""BM25 in memory ([search] lexical_index = "memory") gives exactly FTS5's lexical candidates: the same
memories, the same scores to the last bit, in the same order, after any write of this daemon or another
process."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import anyio
import msgspec
import pytest

from daemon import NewMemory, agent_named, open_services
from daemon.bm25 import best_matches
from daemon.filters import MemoryFilter
from daemon.lexical import exact_query, fts_query
from daemon.lexical_index import LexicalIndex
from daemon.models import MemoryChanges
from daemon.store import Connection
from daemon.transfer import ImportDefaults, import_lines
from tests.conftest import make_config

pytestmark = pytest.mark.anyio
ROUNDS = 12

WORDS = ["billing", "service", "decided", "Lena", "searches", "index", "deploying", "review", "Rosa", "team"]
WORDS += ["café", "naïve", "v2", "2024", "plan", "planned", "planning", "the", "of", "report"]


def text(rng: random.Random) -> str:
    # Few words: many notes share them, and many notes are equal (ties in BM25).
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))


def memory_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = make_config(tmp_path, "none")
    return msgspec.structs.replace(
        config, search=msgspec.structs.replace(config.search, lexical_index="memory")
    )


async def ready(index: LexicalIndex) -> None:
    with anyio.fail_after(30):
        await index.wait_ready()


async def compare(index: LexicalIndex, conn: Connection, cube_ids: list[int], rng: random.Random) -> int:
    """Several random queries: the index's candidates equal FTS5's. The number the index answered."""
    predicate, params = MemoryFilter().sql()
    answered = 0
    for _ in range(6):
        query = text(rng)
        for expression in (fts_query(query), exact_query(query)):
            if expression is None:
                continue
            for limit in (1, 7, 40, 1000):
                got = await index.best_matches(conn, expression, cube_ids, predicate, params, limit)
                top = await best_matches(conn, expression, cube_ids, predicate, params, limit)
                every = await best_matches(
                    conn, expression, cube_ids, predicate, params, limit, try_top=False
                )
                assert top == every, expression
                if got is not None:
                    answered += 1
                    assert got == every, (expression, limit)
    return answered


async def test_in_memory_bm25_equals_fts5_over_random_corpora_and_writes(tmp_path: Path) -> None:
    """Steps: alice and bob write random notes; between rounds of random queries (in alice's cube, bob's,
    and both), notes are added one by one (some with tags) and in batches, imported, updated, deleted,
    restored and superseded (the index is filled again without its retired rows often, a few token
    instances at a time). Every
    answer of the index equals FTS5's (seq, score) list exactly, and the index answers nearly every query."""
    rng = random.Random(17)
    async with open_services(memory_config(tmp_path)) as services:
        index = services.search.lexical_index
        assert index is not None
        index.compact_after, index.compact_share = 2, 0.0  # retired rows dropped often
        index.fill_slice = 5  # fills of many slices, as a large database's
        await services.identities.add("alice")
        await services.identities.add("bob")
        alice, bob = agent_named("alice"), agent_named("bob")
        ids = list(
            (
                await services.additions.add_batch(
                    alice, None, [NewMemory(content=text(rng)) for _ in range(150)]
                )
            ).ids
        )
        await services.additions.add_batch(bob, None, [NewMemory(content=text(rng)) for _ in range(60)])
        await ready(index)
        async with services.store.read() as conn:
            cubes = {
                row["name"]: row["id"]
                for row in await conn.rows("SELECT name, id FROM cubes WHERE name IN ('@alice', '@bob')")
            }
        deleted: list[str] = []
        answered = 0
        for _ in range(ROUNDS):
            async with services.store.read() as conn:
                for scope in ([cubes["@alice"]], [cubes["@bob"]], [cubes["@alice"], cubes["@bob"]]):
                    answered += await compare(index, conn, scope, rng)
            for _ in range(rng.randint(1, 6)):
                action = rng.choice(["add", "batch", "update", "delete", "restore", "supersede", "import"])
                if action == "add":
                    item = NewMemory(content=text(rng), tags=[rng.choice(WORDS[:10])])
                    ids.append((await services.additions.add(alice, None, item)).id)
                elif action == "supersede":
                    memory_id = rng.choice(ids)
                    if memory_id not in deleted:
                        item = NewMemory(content=text(rng))
                        ids.append(
                            (await services.additions.add(alice, None, item, supersedes=[memory_id])).id
                        )
                elif action == "import":
                    line = json.dumps({"content": text(rng), "tags": [rng.choice(WORDS[:10])]})
                    defaults = ImportDefaults(agent="alice", cube="@alice", kind="note")
                    report = await import_lines(services.store, [line], defaults, services.config.limits)
                    assert not report.errors
                elif action == "batch":
                    added = await services.additions.add_batch(
                        alice, None, [NewMemory(content=text(rng)) for _ in range(rng.randint(1, 20))]
                    )
                    ids += added.ids
                elif action == "update":
                    memory_id = rng.choice(ids)
                    if memory_id not in deleted:
                        await services.memories.update(alice, memory_id, MemoryChanges(content=text(rng)))
                elif action == "delete":
                    memory_id = rng.choice(ids)
                    if memory_id not in deleted:
                        await services.memories.delete(alice, memory_id)
                        deleted.append(memory_id)
                elif deleted:
                    await services.memories.restore(alice, deleted.pop(rng.randrange(len(deleted))))
            await ready(index)  # a compaction may have begun a fill on a worker thread: the next round waits
        assert index.fills >= 2  # filled again without its retired rows
        assert answered > 0.9 * ROUNDS * 3 * 6 * 4  # the exact query's phrases of several words go to FTS5


async def test_a_write_by_another_process_is_seen(tmp_path: Path) -> None:
    """Steps: alice writes notes; the index is filled. Another process changes one note's text in the
    database file. The next search's candidates are FTS5's (the index does not answer while it is behind),
    and within seconds the index is filled again and answers, with the new text found."""
    config = memory_config(tmp_path)
    async with open_services(config) as services:
        index = services.search.lexical_index
        assert index is not None
        await services.identities.add("alice")
        alice = agent_named("alice")
        await services.additions.add_batch(
            alice, None, [NewMemory(content=f"billing note {i}") for i in range(50)]
        )
        await ready(index)
        predicate, params = MemoryFilter().sql()
        async with services.store.read() as conn:
            cube = await conn.value("SELECT id FROM cubes WHERE name = '@alice'")
            seq = await conn.value("SELECT max(seq) FROM memories")
            assert await index.best_matches(conn, '"zeppelin"', [cube], predicate, params, 10) == []
        script = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
            " c.execute('UPDATE memories SET content = ? WHERE seq = ?', ('a zeppelin note', int(sys.argv[2])));"
            " c.commit()"
        )
        with anyio.fail_after(30):
            await anyio.run_process([sys.executable, "-c", script, str(config.database_path), str(seq)])
        async with services.store.read() as conn:
            assert await index.best_matches(conn, '"zeppelin"', [cube], predicate, params, 10) is None
            expected = await best_matches(conn, '"zeppelin"', [cube], predicate, params, 10)
        assert [s for s, _ in expected] == [seq]
        got = None
        for _ in range(200):  # the index looks every 2 s, then fills again
            async with services.store.read() as conn:
                got = await index.best_matches(conn, '"zeppelin"', [cube], predicate, params, 10)
            if got is not None:
                break
            await anyio.sleep(0.1)
        assert got == expected
