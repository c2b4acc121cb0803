"""Memories that stay true, over real MCP sessions (HTTP and the stdio bridge): supersession, validity in
time, duplicates, idempotent writes surviving a restart, and retention with a dry run that matches."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from tests.conftest import (
    RunningDaemon,
    free_port,
    mcp_client,
    start_daemon,
    stop_daemon,
    write_config,
)
from tests.conftest import (
    memos_at as memos,
)
from tests.test_mcp_http import call, call_error
from tests.test_stdio_bridge import bridge

pytestmark = pytest.mark.anyio


async def bob_moves(client: Client) -> tuple[dict[str, Any], dict[str, Any]]:
    paris = await call(client, "memory_add", content="Bob lives in Paris", occurred_at="2019-06-01")
    berlin = await call(
        client, "memory_supersede", id=paris["id"], content="Bob moved to Berlin", occurred_at="2024-03-01"
    )
    return paris, berlin


async def check_bob(client: Client) -> None:
    """Steps: Paris superseded by Berlin; a search returns Berlin, not Paris; as_of before the move returns
    Paris; include_superseded returns both, the old one marked; history shows the chain both ways."""
    paris, berlin = await bob_moves(client)
    assert berlin["superseded"] == [paris["id"]]
    now = await call(client, "memory_search", query="where does Bob live")
    assert [hit["content"] for hit in now["results"]] == ["Bob moved to Berlin"]
    then = await call(client, "memory_search", query="where does Bob live", as_of="2023-01-01")
    assert [hit["content"] for hit in then["results"]] == ["Bob lives in Paris"]
    both = await call(client, "memory_search", query="where does Bob live", include_superseded=True)
    marked = {hit["content"]: hit["superseded_by"] for hit in both["results"]}
    assert marked == {"Bob moved to Berlin": None, "Bob lives in Paris": berlin["id"]}
    old = await call(client, "memory_get", id=paris["id"])
    assert old["valid_to"] == berlin["valid_from"] == "2024-03-01T00:00:00.000000Z"
    assert (await call(client, "memory_history", id=berlin["id"]))["supersedes"] == [paris["id"]]
    assert (await call(client, "memory_history", id=paris["id"]))["superseded_by"] == berlin["id"]
    listed = await call(client, "memory_list")
    assert [m["content"] for m in listed["memories"]] == ["Bob moved to Berlin"]


async def test_supersession_and_as_of_over_http(daemon: RunningDaemon) -> None:
    async with mcp_client(daemon.url, daemon.add_agent("truth-http")) as client:
        await check_bob(client)


async def test_supersession_and_as_of_over_the_bridge(daemon: RunningDaemon) -> None:
    token = daemon.add_agent("truth-bridge")
    async with bridge(daemon.config_path, daemon.home, "truth-bridge", token) as client:
        await check_bob(client)


@asynccontextmanager
async def connect(daemon: RunningDaemon, name: str, token: str, transport: str) -> AsyncIterator[Client]:
    """The agent's client over streamable HTTP, or through the stdio bridge."""
    if transport == "http":
        async with mcp_client(daemon.url, token) as client:
            yield client
    else:
        async with bridge(daemon.config_path, daemon.home, name, token) as client:
            yield client


@pytest.mark.parametrize("transport", ["http", "bridge"])
async def test_superseding_in_a_read_only_cube_is_refused_and_changes_nothing(
    daemon: RunningDaemon, transport: str
) -> None:
    o, r = f"ro-owner-{transport}", f"ro-reader-{transport}"
    owner, reader = daemon.add_agent(o), daemon.add_agent(r)
    daemon.relate(f"team-{transport}", o, r)  # so the owner can name the reader
    async with connect(daemon, o, owner, transport) as a, connect(daemon, r, reader, transport) as b:
        cube = f"ro-facts-{transport}"
        await call(a, "cube_create", name=cube)
        fact = await call(a, "memory_add", content="The office is on floor 3", cube=cube)
        await call(a, "cube_share", cube=cube, grantee=r, permission="read")
        refused = await call_error(b, "memory_supersede", id=fact["id"], content="The office is on floor 5")
        assert "Permission denied" in refused
        refused = await call_error(b, "memory_add", content="floor 5", supersedes=[fact["id"]])
        assert "Permission denied" in refused
        after = await call(a, "memory_get", id=fact["id"])
        assert after["superseded_by"] is None and after["valid_to"] is None
        assert (await call(b, "memory_list", cubes=[f"@{r}"]))["memories"] == []  # nothing written
        assert [m["content"] for m in (await call(a, "memory_list", cubes=[cube]))["memories"]] == [
            "The office is on floor 3"
        ]


@pytest.mark.parametrize("transport", ["http", "bridge"])
async def test_a_duplicate_add_returns_the_first_id_and_similar_memories_are_reported(
    daemon: RunningDaemon, transport: str
) -> None:
    name = f"dupes-{transport}"
    async with connect(daemon, name, daemon.add_agent(name), transport) as client:
        first = await call(client, "memory_add", content="The standup is at 9:30 every weekday", kind="fact")
        again = await call(
            client, "memory_add", content="  the standup is at 9:30   EVERY weekday ", kind="fact"
        )
        assert again["id"] == first["id"] and again["duplicate"] is True
        other_kind = await call(
            client, "memory_add", content="The standup is at 9:30 every weekday", kind="note"
        )
        assert other_kind["id"] != first["id"] and other_kind["duplicate"] is False
        near = await call(
            client, "memory_add", content="The daily standup happens at 9:30 each weekday", kind="fact"
        )
        assert near["duplicate"] is False
        assert first["id"] in [s["id"] for s in near["similar"]]
        assert all(s["score"] >= 0.85 and s["cube"] == f"@{name}" for s in near["similar"])
        batch = await call(
            client,
            "memory_add_batch",
            items=[{"content": "The standup is at 9:30 every weekday", "kind": "fact"}, {"content": "new"}],
        )
        assert batch["duplicates"] == [first["id"]] and batch["ids"][0] == first["id"]
        said_twice = await call(
            client,
            "memory_add_batch",
            items=[{"content": "Thanks!", "kind": "message", "metadata": {"session": s}} for s in ("a", "b")],
        )
        assert said_twice["duplicates"] == [] and len(set(said_twice["ids"])) == 2  # two turns, not one


async def test_a_retried_write_with_the_same_key_writes_once_even_across_a_restart(tmp_path: Path) -> None:
    """Steps: add with key K; restart memosd; add again with K (same arguments): the first result comes
    back and nothing new is stored; K with other arguments is refused; the same holds for batch and update."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    daemon = start_daemon(config, tmp_path, port)
    token = daemon.add_agent("retrier")
    async with mcp_client(daemon.url, token) as client:
        first = await call(client, "memory_add", content="Only once, please", idempotency_key="k-1")
        batch = await call(
            client, "memory_add_batch", items=[{"content": "b1"}, {"content": "b2"}], idempotency_key="k-2"
        )
        update = await call(client, "memory_update", id=first["id"], tags=["x"], idempotency_key="k-3")
    stop_daemon(daemon)
    daemon = start_daemon(config, tmp_path, port)
    try:
        async with mcp_client(daemon.url, token) as client:
            assert (
                await call(client, "memory_add", content="Only once, please", idempotency_key="k-1") == first
            )
            assert (
                await call(
                    client,
                    "memory_add_batch",
                    items=[{"content": "b1"}, {"content": "b2"}],
                    idempotency_key="k-2",
                )
                == batch
            )
            assert (
                await call(client, "memory_update", id=first["id"], tags=["x"], idempotency_key="k-3")
                == update
            )
            assert (await call(client, "memory_get", id=first["id"]))["version"] == 2
            listed = await call(client, "memory_list")
            assert sorted(m["content"] for m in listed["memories"]) == ["Only once, please", "b1", "b2"]
            reused = await call_error(client, "memory_add", content="something else", idempotency_key="k-1")
            assert "Conflict: idempotency_key 'k-1' was already used" in reused
    finally:
        stop_daemon(daemon)


async def test_the_retention_dry_run_lists_exactly_what_the_job_archives_and_archived_memories_restore(
    tmp_path: Path,
) -> None:
    """Steps: import old and new memories into a cube; configure max_age_days, a message ttl and max_count;
    the dry run lists a set; the job archives exactly that set; an archived memory restores and stays."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    memos(config, "agent", "add", "keeper")
    lines = [
        {"content": "ancient fact", "kind": "fact", "created_at": "2020-01-01T00:00:00Z"},
        {"content": "old chat line", "kind": "message", "created_at": "2026-01-01T00:00:00Z"},
        *({"content": f"recent note {i}", "kind": "note"} for i in range(5)),
    ]
    memos(config, "import", "-", "--agent", "keeper", stdin="\n".join(json.dumps(line) for line in lines))
    memos(
        config,
        "cube",
        "configure",
        "@keeper",
        "--agent",
        "keeper",
        "--max-age-days",
        "365",
        "--ttl",
        "message=30",
        "--max-count",
        "4",
    )
    plan = json.loads(memos(config, "cube", "retention", "@keeper", "--dry-run", "--json").stdout)
    assert {(p["content"], p["reason"]) for p in plan} == {
        ("ancient fact", "older than max_age_days 365"),
        ("old chat line", "message older than its ttl_days 30"),
        ("recent note 0", "beyond the newest max_count 4"),
    }
    daemon = start_daemon(config, tmp_path, port)  # the daemon's retention job runs at start
    try:
        token_line = memos(config, "agent", "rotate-token", "keeper").stdout.strip().splitlines()[-1]
        async with mcp_client(daemon.url, token_line) as client:
            listed = await call(client, "memory_list", include_deleted=True, limit=50)
            archived = {m["content"]: m for m in listed["memories"] if m["deleted_at"]}
            assert set(archived) == {p["content"] for p in plan}
            restored = await call(client, "memory_restore", id=archived["ancient fact"]["id"])
            assert restored["deleted_at"] is None
    finally:
        stop_daemon(daemon)
    assert json.loads(memos(config, "cube", "retention", "@keeper", "--dry-run", "--json").stdout) == []
