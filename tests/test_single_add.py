"""One `memory_add`, the path an agent waits on: what it answers, what it writes, and that nothing it promises
(durability, exact similar memories, read-your-writes, all or nothing) is traded for its speed (issue 17)."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest
from mcp import Client

from daemon import NewMemory, NotFound, SearchQuery, Services, agent_named
from daemon.cube_settings import DEFAULTS, CubeSettings
from tests.conftest import BOTH, free_port, mcp_client, memos_at, start_daemon, stop_daemon, write_config
from tests.test_mcp_http import call

pytestmark = pytest.mark.anyio
BACKENDS = BOTH


async def _hybrid(client: Client) -> None:
    """Once searches are hybrid: the model is loaded, so adds are embedded as they are written."""
    with anyio.fail_after(60):
        while (await call(client, "memory_search", query="warm up"))["mode"] != "hybrid":  # noqa: ASYNC110 - polls the daemon
            await anyio.sleep(0.2)


async def _alice(services: Services):  # type: ignore[no-untyped-def]
    await services.identities.add("alice")
    return agent_named("alice")


async def test_an_add_answers_the_memory_as_a_read_of_it_gives_it(services: Services) -> None:
    """The add's answer is built from what it wrote (no read back): every field is what memory_get returns,
    for a new memory and for an exact duplicate (the memory that was there)."""
    alice = await _alice(services)
    item = NewMemory(
        content="Lena decided to move the billing service to PostgreSQL 18",
        kind="event",
        tags=["billing", "db"],
        metadata={"speaker": "Lena", "turn": 3, "nested": {"ok": [1, 2.5, None]}},
        occurred_at="2026-11-30T10:00:00Z",
        importance=0.8,
        expires_at="2027-11-30T10:00:00Z",
        task_id="task-7",
    )
    added = await services.additions.add(alice, None, item)
    stored = await services.memories.get(alice, added.id)
    assert not added.duplicate
    assert {f: getattr(added, f) for f in stored.__struct_fields__} == {
        f: getattr(stored, f) for f in stored.__struct_fields__
    }
    plain = await services.additions.add(alice, None, NewMemory(content="Standup is at 9:30"))
    stored_plain = await services.memories.get(alice, plain.id)
    assert {f: getattr(plain, f) for f in stored_plain.__struct_fields__} == {
        f: getattr(stored_plain, f) for f in stored_plain.__struct_fields__
    }
    again = await services.additions.add(alice, None, item)
    assert again.duplicate and again.id == added.id
    assert {f: getattr(again, f) for f in stored.__struct_fields__} == {
        f: getattr(stored, f) for f in stored.__struct_fields__
    }


async def test_similar_memories_are_the_exact_current_neighbours_before_the_add(services: Services) -> None:
    """Steps: four memories about Bob's home, one deleted, one superseded by another; a fifth added. It
    reports the current ones above the threshold, best first, each with its exact cosine similarity to the
    new text (rounded to 4 places) — not the deleted one, not the superseded one, not itself; an exact
    duplicate of one reports the others, never the memory it is."""
    alice = await _alice(services)
    texts = [
        "Bob lives in Paris with his two cats",
        "Bob lives in Paris with his two cats and a dog",
        "Bob lived in Lyon with his two cats",
        "Bob lives in Paris with two cats, a dog and a parrot",
    ]
    kept, deleted, old, newer = [
        await services.additions.add(alice, None, NewMemory(content=t)) for t in texts
    ]
    await services.memories.delete(alice, deleted.id)
    replaced = await services.additions.add(
        alice, None, NewMemory(content="Bob moved from Lyon to Paris with his cats"), supersedes=[old.id]
    )
    text = "Bob lives in Paris with his two cats and one dog"
    added = await services.additions.add(alice, None, NewMemory(content=text))

    vectors = await services.vectors.embed([text, kept.content, newer.content, replaced.content])
    assert vectors is not None
    score = {
        m.id: round(float(vectors[0] @ v), 4)
        for m, v in zip((kept, newer, replaced), vectors[1:], strict=True)
    }
    expected = sorted(
        ((i, s) for i, s in score.items() if s >= DEFAULTS.similar_threshold), key=lambda p: -p[1]
    )
    assert len(expected) >= 2  # the case is crafted so that several current memories are near
    assert [(s.id, s.score) for s in added.similar] == expected
    assert deleted.id not in {s.id for s in added.similar} and old.id not in {s.id for s in added.similar}
    assert added.id not in {s.id for s in added.similar}

    again = await services.additions.add(alice, None, NewMemory(content=kept.content))
    assert again.duplicate and again.id == kept.id
    assert kept.id not in {s.id for s in again.similar}
    assert added.id in {s.id for s in again.similar}


async def test_an_add_that_fails_in_its_write_leaves_nothing_behind(services: Services) -> None:
    """Steps: an add whose supersedes names no memory fails after its row was inserted in the transaction;
    then no memory, no vector, no entity and no audit entry of it exist, and neither search finds it."""
    alice = await _alice(services)
    text = "Orla Quinnell approved the Zephyr budget"
    with pytest.raises(NotFound, match="mem_0000000000000000"):
        await services.additions.add(
            alice, None, NewMemory(content=text), supersedes=["mem_0000000000000000"]
        )
    assert (await services.memories.list(alice)).memories == []
    for mode in ("lexical", "vector"):
        found = await services.search.search(alice, SearchQuery(query="Zephyr budget Orla", mode=mode))
        assert found.results == []
    async with services.store.read() as conn:
        counts = [
            await conn.value(f"SELECT count(*) FROM {table}")
            for table in ("memories", "memory_vectors", "memory_entities", "entity_pending")
        ]
        audit = await conn.value("SELECT count(*) FROM audit WHERE action = 'memory_add'")
    assert counts == [0, 0, 0, 0] and audit == 0


@pytest.mark.sqlite_only  # SQLite's statement trace
async def test_a_single_add_does_not_read_back_or_redo_what_its_write_knows(services: Services) -> None:
    """The write of one add inserts the memory marked embedded and its vector in one statement each, and
    neither reads the new row back (for the answer, the entities) nor reads the similar memories' rows: the
    lookup beside it did, on a reader."""
    alice = await _alice(services)
    await services.additions.add(alice, None, NewMemory(content="Mira Okafor leads the billing migration"))
    statements: list[str] = []
    writer = services.store._writer  # the store's one writer connection
    await writer.set_trace_callback(statements.append)
    try:
        added = await services.additions.add(
            alice, None, NewMemory(content="Mira Okafor leads the billing migration to PostgreSQL")
        )
    finally:
        await writer.set_trace_callback(None)
    assert [s.id for s in added.similar]  # the lookup ran and found the first memory
    mine = [s for s in statements if "memories" in s or "memory_" in s]
    assert not [s for s in mine if s.startswith("SELECT") and "FROM memories m JOIN cubes" in s]
    assert not [s for s in mine if s.startswith("SELECT seq, cube_id, content, metadata FROM memories")]
    assert not [
        s for s in mine if s.startswith(("UPDATE memories SET embedded", "DELETE FROM memory_vectors"))
    ]
    assert not [s for s in mine if s.startswith("DELETE FROM memory_entities")]
    assert not [s for s in mine if s.startswith("SELECT seq, id, kind, content_hash")]  # in the INSERT
    assert not [s for s in mine if s.startswith("SELECT seq, id, content")]  # the similar rows
    async with services.store.read() as conn:
        row = await conn.row(
            "SELECT m.embedded, (SELECT count(*) FROM memory_vectors v WHERE v.rowid = m.seq) AS vectors,"
            " (SELECT count(*) FROM memory_entities e WHERE e.seq = m.seq) AS entities,"
            " (SELECT count(*) FROM entity_pending p WHERE p.seq = m.seq) AS pending"
            " FROM memories m WHERE m.id = ?",
            (added.id,),
        )
    assert row is not None
    assert (row["embedded"], row["vectors"], row["pending"]) == (1, 1, 0) and row["entities"] >= 2


@pytest.mark.timeout(180)
async def test_an_add_acknowledged_survives_a_kill_9_right_after_and_is_found_at_once(
    tmp_path: Path, model_dir: Path
) -> None:
    """Steps: memosd with the real model; an agent adds a memory and, the moment it is answered, searches
    for it by words and by meaning (both find it); memosd gets SIGKILL right after another add's answer;
    restarted, both memories are there with their text and their vectors (a search by meaning finds them)."""
    port = free_port()
    config = write_config(tmp_path, port=port, model=str(model_dir))
    token = memos_at(config, "agent", "add", "writer").stdout.strip().splitlines()[-1]
    daemon = start_daemon(config, tmp_path, port)
    texts = [
        "Ines Albareda owns the Kestrel release checklist",
        "The Kestrel release freeze starts on Friday",
    ]
    try:
        async with mcp_client(daemon.url, token) as client:
            await _hybrid(client)
            first = await call(client, "memory_add", content=texts[0])
            for mode, query in (("lexical", "Albareda checklist"), ("vector", "who is responsible for it")):
                found = await call(client, "memory_search", query=query, mode=mode, k=3)
                assert first["id"] in [hit["id"] for hit in found["results"]], mode
            second = await call(client, "memory_add", content=texts[1])
            daemon.process.send_signal(signal.SIGKILL)
        await anyio.to_thread.run_sync(daemon.process.wait, 30)
    finally:
        stop_daemon(daemon)
    daemon = start_daemon(config, tmp_path, port)
    try:
        async with mcp_client(daemon.url, token) as client:
            for memory, text in ((first, texts[0]), (second, texts[1])):
                assert (await call(client, "memory_get", id=memory["id"]))["content"] == text
            await _hybrid(client)
            found = await call(
                client, "memory_search", query="when does the code freeze begin", mode="vector"
            )
            assert second["id"] in [hit["id"] for hit in found["results"][:3]]
    finally:
        stop_daemon(daemon)


async def test_a_redacting_cube_embeds_only_masked_text_and_a_refused_add_stores_nothing(
    services: Services,
) -> None:
    """A single add's text is embedded while its cube's permission and settings are read, unless it holds
    something a redaction masks. Steps: alice's cube redacts secrets; an add whose content holds a key stores
    the vector of the masked text; an add with plain content and a secret in a tag stores the tag masked and
    the vector of its content; bob, who may not write there, is refused and nothing of his is stored."""
    alice = await _alice(services)
    await services.identities.add("bob")
    await services.settings.configure(alice, "@alice", CubeSettings(redact_secrets=True))
    key = "sk-ant-" + "Zq7" * 10
    secret = await services.additions.add(alice, None, NewMemory(content=f"The deploy key is {key}"))
    assert key not in secret.content and "[REDACTED:anthropic_key]" in secret.content
    plain = await services.additions.add(
        alice, None, NewMemory(content="The deploy runs every Friday", tags=["ops", f"password={key}"])
    )
    assert plain.content == "The deploy runs every Friday" and key not in " ".join(plain.tags)

    vectors = await services.vectors.embed([secret.content, f"The deploy key is {key}", plain.content])
    assert vectors is not None
    async with services.store.read() as conn:
        seqs = {
            row["id"]: row["seq"]
            for row in await conn.rows(
                "SELECT id, seq FROM memories WHERE id IN (?, ?)", (secret.id, plain.id)
            )
        }
        masked = await services.vectors.similarities(conn, vectors[0], [seqs[secret.id]])
        unmasked = await services.vectors.similarities(conn, vectors[1], [seqs[secret.id]])
        content = await services.vectors.similarities(conn, vectors[2], [seqs[plain.id]])
    assert masked[seqs[secret.id]] > 0.9999 and unmasked[seqs[secret.id]] < 0.999
    assert content[seqs[plain.id]] > 0.9999

    with pytest.raises(NotFound):
        await services.additions.add(agent_named("bob"), "@alice", NewMemory(content="Bob was here"))
    assert [m.id for m in (await services.memories.list(alice)).memories] == [plain.id, secret.id]


async def test_a_single_add_is_a_duplicate_only_of_a_current_memory_of_its_cube_and_kind(
    services: Services,
) -> None:
    """The INSERT of a single add skips its text when a current memory of the cube has it with the same kind
    (the add is then that memory); the text again with another kind, after the first was deleted or
    superseded, as a message, or in a cube with dedupe_exact off, is a new memory."""
    alice = await _alice(services)
    first = await services.additions.add(alice, None, NewMemory(content="Standup is at 9:30", kind="fact"))
    same = await services.additions.add(alice, None, NewMemory(content="Standup is at 9:30", kind="fact"))
    assert same.duplicate and same.id == first.id and same.similar == []
    other_kind = await services.additions.add(alice, None, NewMemory(content="Standup is at 9:30"))
    assert not other_kind.duplicate and other_kind.id != first.id
    await services.memories.delete(alice, first.id)
    after_delete = await services.additions.add(
        alice, None, NewMemory(content="Standup is at 9:30", kind="fact")
    )
    assert not after_delete.duplicate and after_delete.id != first.id
    newer = await services.additions.add(
        alice, None, NewMemory(content="Standup is at 10:00", kind="fact"), supersedes=[after_delete.id]
    )
    after_supersede = await services.additions.add(
        alice, None, NewMemory(content="Standup is at 9:30", kind="fact")
    )
    assert not after_supersede.duplicate and after_supersede.id not in {after_delete.id, newer.id}
    said = [
        await services.additions.add(alice, None, NewMemory(content="thanks!", kind="message"))
        for _ in range(2)
    ]
    assert not said[1].duplicate and said[0].id != said[1].id
    await services.settings.configure(alice, "@alice", CubeSettings(dedupe_exact=False))
    kept = await services.additions.add(alice, None, NewMemory(content="Standup is at 9:30", kind="fact"))
    assert not kept.duplicate and kept.id != after_supersede.id
    listed = [m.id for m in (await services.memories.list(alice)).memories]
    assert listed == [kept.id, said[1].id, said[0].id, after_supersede.id, newer.id, other_kind.id]
