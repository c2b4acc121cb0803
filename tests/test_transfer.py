"""Export, import, backup and restore as a user runs them: the commands against real database files."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import anyio
import pytest

from daemon import (
    Config,
    MemoryChanges,
    NewMemory,
    SearchQuery,
    Unauthenticated,
    agent_named,
    load_config,
    open_store_services,
)
from daemon.cube_settings import CubeSettings
from daemon.sqlite_driver import sqlite_module
from tests.conftest import (
    free_port,
    mcp_client,
    start_daemon,
    stop_daemon,
    write_config,
)
from tests.conftest import (
    memos_at as memos,
)
from tests.test_mcp_http import call

pytestmark = pytest.mark.anyio


async def test_export_then_import_into_a_fresh_data_dir_gives_identical_memories_and_history(
    tmp_path: Path,
) -> None:
    """Steps: through a real daemon, add memories to two cubes, update one twice, delete one; export; import
    into a fresh data dir; export again: the two exports are identical, line for line. Importing again adds
    nothing."""
    source = tmp_path / "source"
    source.mkdir()
    port = free_port()
    config = write_config(source, port=port, model="none")
    daemon = start_daemon(config, source, port)
    try:
        token = daemon.add_agent("alice")
        async with mcp_client(daemon.url, token) as client:
            await call(client, "cube_create", name="team-x", description="the team")
            first = await call(
                client, "memory_add", content="v1", tags=["a"], metadata={"n": 1}, importance=0.9
            )
            await call(client, "memory_update", id=first["id"], content="v2")
            await call(client, "memory_update", id=first["id"], tags=["b"], occurred_at="2026-05-01")
            gone = await call(client, "memory_add", content="to be deleted", cube="team-x", kind="event")
            await call(client, "memory_delete", id=gone["id"])
            await call(
                client,
                "memory_add_batch",
                items=[{"content": f"fact {i}", "kind": "fact"} for i in range(20)],
            )
    finally:
        stop_daemon(daemon)
    exported = memos(config, "export").stdout
    assert len(exported.splitlines()) == 22
    assert json.loads(exported.splitlines()[0])["history"][0]["content"] == "v1"

    target = tmp_path / "target"
    target.mkdir()
    fresh = write_config(target, port=free_port(), model="none")
    result = memos(fresh, "import", "-", stdin=exported)
    assert result.stdout.strip() == "22 added, 0 already present, 0 bad lines"
    assert memos(fresh, "export").stdout == exported
    again = memos(fresh, "import", "-", stdin=exported)
    assert again.stdout.strip() == "0 added, 22 already present, 0 bad lines"


async def test_import_reports_each_bad_line_by_number_and_strict_writes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    lines = "\n".join(
        [
            json.dumps({"content": "good one", "kind": "fact", "source_agent": "ann"}),
            json.dumps({"content": "no kind", "source_agent": "ann"}),
            "{not json",
            json.dumps({"content": "", "kind": "fact", "source_agent": "ann"}),
            json.dumps({"content": "bad time", "kind": "fact", "source_agent": "ann", "occurred_at": "soon"}),
            json.dumps({"content": "good two", "kind": "note", "source_agent": "ann"}),
        ]
    )
    strict = memos(config, "import", "-", "--strict", stdin=lines, check=False)
    assert strict.returncode == 1 and "nothing was written" in strict.stderr
    assert memos(config, "export").stdout == ""
    result = memos(config, "import", "-", stdin=lines, check=False)
    assert result.returncode == 1
    assert result.stdout.strip() == "2 added, 0 already present, 4 bad lines"
    assert [line.split(":")[0] for line in result.stderr.splitlines()] == [
        "line 2",
        "line 3",
        "line 4",
        "line 5",
    ]
    assert "no kind" in result.stderr.splitlines()[0]


async def test_transcripts_and_markdown_notes_import_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    transcript = tmp_path / "chat-2026-05-01.json"
    transcript.write_text(
        json.dumps(
            [
                {
                    "role": "user",
                    "content": "I'm planning a trip to Kyoto",
                    "timestamp": "2026-05-01T10:00:00Z",
                },
                {
                    "speaker": "assistant",
                    "content": "Spring is lovely there",
                    "timestamp": "2026-05-01T10:00:05Z",
                },
            ]
        )
    )
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "deploy.md").write_text("# Deploying\n\nRun the migration first.\n")
    (notes / "sub" / "people.md").write_text("Bob owns billing.\n")
    first = memos(config, "import", str(transcript), "--format", "transcript", "--agent", "ann")
    assert first.stdout.strip() == "2 added, 0 already present, 0 bad lines"
    assert memos(
        config, "import", str(transcript), "--format", "transcript", "--agent", "ann"
    ).stdout.startswith("0 added, 2 already present")
    assert memos(config, "import", str(notes), "--format", "markdown", "--agent", "ann").stdout.startswith(
        "2 added"
    )
    records = [json.loads(line) for line in memos(config, "export").stdout.splitlines()]
    assert [(r["kind"], r["metadata"].get("role"), r["occurred_at"]) for r in records[:2]] == [
        ("message", "user", "2026-05-01T10:00:00.000000Z"),
        ("message", "assistant", "2026-05-01T10:00:05.000000Z"),
    ]
    assert (
        records[2]["metadata"] == {"path": "deploy.md", "title": "Deploying"} and records[2]["kind"] == "note"
    )


async def test_a_backup_taken_under_concurrent_writes_restores_to_a_consistent_store(tmp_path: Path) -> None:
    """Steps: a writer thread adds memories through the daemon; meanwhile `memos backup`; stop; restore the
    backup; the restored database passes its integrity check, and every memory in it is whole (content,
    history rows, FTS index entry) and a prefix of what was written."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    daemon = start_daemon(config, tmp_path, port)
    token = daemon.add_agent("writer")
    stop = threading.Event()
    written: list[str] = []

    async def write_until_stopped() -> None:
        async with mcp_client(daemon.url, token) as client:
            i = 0
            while not stop.is_set():
                await call(client, "memory_add", content=f"memory number {i}")
                written.append(f"memory number {i}")
                i += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(write_until_stopped)
        while len(written) < 50:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        backup = tmp_path / "backup.db"
        result = await anyio.to_thread.run_sync(lambda: memos(config, "backup", str(backup)))
        assert "backup written" in result.stdout
        await anyio.sleep(0.2)
        stop.set()
    assert stop_daemon(daemon) == 0
    restored = memos(config, "restore", str(backup))
    assert "restored" in restored.stdout
    records = [json.loads(line)["content"] for line in memos(config, "export").stdout.splitlines()]
    assert 50 <= len(records) < len(written)
    assert records == written[: len(records)]
    conn = sqlite_module().connect(str(tmp_path / "data" / "memos.db"))
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.execute("INSERT INTO memories_fts(memories_fts, rank) VALUES ('integrity-check', 1)")
    conn.close()


def test_restore_refuses_while_the_daemon_serves(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    daemon = start_daemon(config, tmp_path, port)
    try:
        memos(config, "backup", str(tmp_path / "b.db"))
        refused = memos(config, "restore", str(tmp_path / "b.db"), check=False)
        assert refused.returncode == 1 and "stop it before restoring" in refused.stderr
    finally:
        stop_daemon(daemon)


async def _build_source(config: Config) -> dict[str, str]:
    """A store with every kind of state a memory and its surroundings can be in; returns the tokens."""
    async with open_store_services(config) as s:
        tokens = {name: (await s.identities.add(name))[1] for name in ("alice", "bob", "carol")}
        alice, bob = agent_named("alice"), agent_named("bob")
        await s.identities.set_disabled("carol", True)
        await s.groups.add("team")
        await s.groups.add_member("team", "alice")
        await s.groups.add_member("team", "bob")
        await s.cubes.create(alice, "team-x", "the team")
        await s.settings.configure(
            alice, "team-x", CubeSettings(dedupe_exact=False, ttl_days={"message": 30})
        )
        await s.cubes.share(alice, "team-x", "bob", "write")
        await s.cubes.share(alice, "team-x", "group:team", "read")
        task = await s.tasks.handoff(
            alice, "bob", "Find Bob's address", "check both", ["team-x"], "start here"
        )
        await s.tasks.update(bob, task.id, "accepted", "on it")
        paris = await s.additions.add(
            alice, "team-x", NewMemory(content="Bob lives in Paris", kind="fact", occurred_at="2025-01-01")
        )
        berlin = await s.additions.add(
            bob, "team-x",
            NewMemory(content="Bob moved to Berlin", kind="fact", occurred_at="2026-03-01", task_id=task.id),
            supersedes=[paris.id],
        )  # fmt: skip
        edited = await s.additions.add(
            alice, None,
            NewMemory(content="v1", tags=["a"], metadata={"n": 1}, importance=0.9, expires_at="2099-01-01"),
        )  # fmt: skip
        await s.memories.update(alice, edited.id, MemoryChanges(content="v2"))
        await s.memories.update(alice, edited.id, MemoryChanges(tags=["b"], occurred_at="2026-05-01"))
        gone = await s.additions.add(alice, "team-x", NewMemory(content="to be deleted", kind="event"))
        await s.memories.delete(alice, gone.id)
        await s.cubes.create(bob, "chatter")
        for i in range(3):
            await s.additions.add(
                bob, "chatter", NewMemory(content=f"chat line {i} about Berlin", kind="message")
            )
        await s.settings.configure(bob, "chatter", CubeSettings(max_count=1))
        archived = await s.retention.apply("chatter")
        assert len(archived) == 2
        await s.memories.restore(bob, archived[0].id)  # kept from now on
        assert berlin.id
    return tokens


async def _snapshot(config: Config) -> dict[str, object]:
    """Everything the service API tells about the store, read as each cube's owner and each task's agents."""
    async with open_store_services(config) as s:
        agents = await s.identities.list()
        seen: dict[str, object] = {"agents": agents, "groups": await s.groups.list()}
        for info in agents:
            agent = agent_named(info.name)
            for cube in await s.cubes.list(agent):
                seen[f"cube {cube.name}"] = (
                    cube,
                    await s.cubes.members(agent, cube.name),
                    await s.settings.describe(agent, cube.name),
                )
            seen[f"tasks {info.name}"] = await s.tasks.list(agent)
        async with s.store.read() as conn:
            rows = await conn.rows(
                "SELECT m.id AS id, c.owner AS owner FROM memories m JOIN cubes c ON c.id = m.cube_id"
                " ORDER BY m.id"
            )
            cubes = [row["name"] for row in await conn.rows("SELECT name FROM cubes ORDER BY name")]
        for memory_id, owner in ((row["id"], row["owner"]) for row in rows):
            agent = agent_named(owner)
            seen[memory_id] = (
                await s.memories.get(agent, memory_id),
                await s.memories.history(agent, memory_id),
                await s.memories.predecessors(agent, memory_id),
            )
        for cube in cubes:
            seen[f"retention plan {cube}"] = await s.retention.plan(cube)
        alice = agent_named("alice")
        for name, query in {
            "now": SearchQuery(query="Bob", mode="lexical"),
            "with superseded": SearchQuery(query="Bob", mode="lexical", include_superseded=True),
            "as of 2025-06": SearchQuery(query="Bob", mode="lexical", as_of="2025-06-01"),
            "as of 2026-06": SearchQuery(query="Bob", mode="lexical", as_of="2026-06-01"),
        }.items():
            found = await s.search.search(alice, query)
            seen[f"search {name}"] = [(hit.content, hit.valid_to, hit.superseded_by) for hit in found.results]
    return seen


async def test_export_all_then_import_into_a_fresh_data_dir_preserves_every_memory_version_link_and_grant(
    tmp_path: Path,
) -> None:
    """Steps: build a store with agents (one disabled), a group, a cube with settings and grants, a task with
    notes, a superseded fact, a memory with three versions, a deleted one, retention-archived ones (one
    restored); `memos export --all`; import into a fresh data dir; everything the service API reports is
    identical, search as of a past time still finds Paris and now finds Berlin only; importing again adds
    nothing; old tokens do not work until `memos agent rotate-token` issues new ones."""
    source = tmp_path / "source"
    source.mkdir()
    source_config = write_config(source, port=free_port(), model="none")
    loaded = load_config(source_config, environ={"HOME": str(source)})
    tokens = await _build_source(loaded)
    exported = memos(source_config, "export", "--all").stdout
    assert "token" not in exported
    mixed = memos(source_config, "export", "--all", "--cube", "team-x", check=False)
    assert mixed.returncode == 1 and "--all exports every cube" in mixed.stderr

    target = tmp_path / "target"
    target.mkdir()
    target_config = write_config(target, port=free_port(), model="none")
    first = memos(target_config, "import", "-", stdin=exported)
    assert (
        first.stdout.splitlines()[0] == f"{len(exported.splitlines())} added, 0 already present, 0 bad lines"
    )
    assert "memos agent rotate-token" in first.stdout
    before, after = (
        await _snapshot(loaded),
        await _snapshot(load_config(target_config, environ={"HOME": str(target)})),
    )
    assert before.keys() == after.keys()
    for key in before:
        assert after[key] == before[key], key
    contents = {k: [hit[0] for hit in v] for k, v in after.items() if k.startswith("search")}  # type: ignore[union-attr]
    assert contents["search now"] == ["Bob moved to Berlin"]
    assert contents["search as of 2025-06"] == ["Bob lives in Paris"]
    assert contents["search as of 2026-06"] == ["Bob moved to Berlin"]
    assert sorted(contents["search with superseded"]) == ["Bob lives in Paris", "Bob moved to Berlin"]
    assert memos(target_config, "export", "--all").stdout == exported

    again = memos(target_config, "import", "-", stdin=exported)
    assert (
        again.stdout.splitlines()[0] == f"0 added, {len(exported.splitlines())} already present, 0 bad lines"
    )

    async with open_store_services(load_config(target_config, environ={"HOME": str(target)})) as s:
        with pytest.raises(Unauthenticated):
            await s.identities.authenticate(tokens["alice"])
    fresh_token = memos(target_config, "agent", "rotate-token", "alice").stdout.strip().splitlines()[-1]
    async with open_store_services(load_config(target_config, environ={"HOME": str(target)})) as s:
        assert (await s.identities.authenticate(fresh_token)).name == "alice"


async def test_a_superseded_fact_stays_superseded_after_a_plain_export_and_import(tmp_path: Path) -> None:
    """Steps: "Bob lives in Paris", then "Bob moved to Berlin" superseding it; `memos export` (memories only);
    import into a fresh data dir: Paris is still closed (valid_to, superseded_by), Berlin still names it as
    the memory it replaced, and only Berlin is current."""
    source = tmp_path / "source"
    source.mkdir()
    source_config = write_config(source, port=free_port(), model="none")
    async with open_store_services(load_config(source_config, environ={"HOME": str(source)})) as s:
        await s.identities.add("alice")
        alice = agent_named("alice")
        paris = await s.additions.add(alice, None, NewMemory(content="Bob lives in Paris", kind="fact"))
        berlin = await s.additions.add(
            alice, None, NewMemory(content="Bob moved to Berlin", kind="fact"), supersedes=[paris.id]
        )
    exported = memos(source_config, "export").stdout
    target = tmp_path / "target"
    target.mkdir()
    target_config = write_config(target, port=free_port(), model="none")
    memos(target_config, "import", "-", stdin=exported)
    async with open_store_services(load_config(target_config, environ={"HOME": str(target)})) as s:
        await s.identities.add("alice")
        old = await s.memories.get(alice, paris.id)
        assert (old.superseded_by, old.valid_to) == (berlin.id, berlin.valid_from)
        assert await s.memories.predecessors(alice, berlin.id) == [paris.id]
        found = await s.search.search(alice, SearchQuery(query="Bob", mode="lexical"))
        assert [hit.content for hit in found.results] == ["Bob moved to Berlin"]


async def test_bad_setup_lines_are_reported_by_number_and_strict_rolls_back_what_the_store_rejects(
    tmp_path: Path,
) -> None:
    """A line of an unknown type, a grant on a cube the file never made and a group with a member who is no
    agent are each reported by line number; the good lines land. With --strict, a line that fails only
    against the store (the grant) still leaves nothing written."""
    config = write_config(tmp_path, port=free_port(), model="none")
    at = "2026-01-01T00:00:00Z"
    lines = [
        {"type": "agent", "name": "ann", "created_at": at},
        {"type": "cube", "name": "notes", "owner": "ann", "created_at": at, "settings": {"max_count": 5}},
        {"type": "widget", "name": "x"},
        {"type": "grant", "cube": "nowhere", "grantee": "ann", "permission": "read", "granted_by": "ann",
         "granted_at": at},
        {"type": "group", "name": "g", "created_at": at, "members": [{"agent": "zed", "added_at": at}]},
        {"type": "grant", "cube": "notes", "grantee": "*", "permission": "read", "granted_by": "ann",
         "granted_at": at},
        {"content": "kept", "kind": "fact", "source_agent": "ann", "cube": "notes"},
    ]  # fmt: skip
    text = "\n".join(json.dumps(line) for line in lines)
    store_rejects = "\n".join(json.dumps(line) for line in [*lines[:2], lines[3]])
    strict = memos(config, "import", "-", "--strict", stdin=store_rejects, check=False)
    assert strict.returncode == 1 and "nothing was written" in strict.stderr
    assert strict.stderr.startswith("line 3: no cube named 'nowhere' here")
    assert memos(config, "export", "--all").stdout == ""
    result = memos(config, "import", "-", stdin=text, check=False)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == "4 added, 0 already present, 3 bad lines"
    assert [line.split(":")[0] for line in result.stderr.splitlines()] == ["line 3", "line 4", "line 5"]
    assert "'widget' is not one of: cube, agent, group, grant, task" in result.stderr
    assert "member 'zed' is no agent here" in result.stderr
    exported = [json.loads(line) for line in memos(config, "export", "--all").stdout.splitlines()]
    assert [(r.get("type", "memory"), r.get("name")) for r in exported] == [
        ("cube", "@ann"), ("cube", "notes"), ("agent", "ann"), ("grant", None), ("memory", None)
    ]  # fmt: skip
    assert exported[1]["settings"] == {"max_count": 5}


def test_export_out_is_a_private_file_put_in_place_only_when_whole(tmp_path: Path) -> None:
    """An export holds every memory: under the usual umask 022 it is still 0600, and it appears only once
    written whole (a refused export leaves no file, not even a partial one)."""
    config = write_config(tmp_path, port=free_port(), model="none")
    memos(config, "agent", "add", "ann")
    memos(config, "add", "Ann's private plan", "--agent", "ann")
    out = tmp_path / "memos.jsonl"
    previous = os.umask(0o022)
    try:
        memos(config, "export", "--out", str(out))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text() == memos(config, "export").stdout
    refused = memos(
        config, "export", "--all", "--cube", "@ann", "--out", str(tmp_path / "no.jsonl"), check=False
    )
    assert refused.returncode != 0 and sorted(p.name for p in tmp_path.glob("*.jsonl*")) == ["memos.jsonl"]
