"""The MCP surface over streamable HTTP, against memosd running as a real process, in both protocol eras."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from mcp import Client

from tests.conftest import RunningDaemon, mcp_client

pytestmark = pytest.mark.anyio
ERAS = ["legacy", "auto"]  # handshake era (initialize + session id) and the modern sessionless era

TOOLS = {
    "cube_list",
    "cube_create",
    "cube_share",
    "cube_unshare",
    "cube_members",
    "cube_configure",
    "memory_supersede",
    "task_handoff",
    "task_list",
    "task_accept",
    "task_update",
    "context_get",
    "memory_add",
    "memory_add_batch",
    "memory_search",
    "memory_list",
    "memory_get",
    "memory_update",
    "memory_delete",
    "memory_restore",
    "memory_history",
    "memory_link",
    "memory_unlink",
}


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert json.loads(result.content[0].text) == result.structured_content  # hosts reading text see the same
    return result.structured_content


async def call_error(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return result.content[0].text


@pytest.fixture(scope="module")
def tokens(daemon: RunningDaemon) -> dict[str, str]:
    return {
        name: daemon.add_agent(name) for name in ("alice", "bob", "carol", "writer-legacy", "writer-auto")
    }


@pytest.mark.parametrize("era", ERAS)
async def test_add_search_get_update_history_delete_over_http(
    daemon: RunningDaemon, tokens: dict[str, str], era: str
) -> None:
    """Steps: add 3 memories; search finds one by meaning; get it; update it (history shows 2 versions);
    delete it (gone from search); restore it."""
    async with mcp_client(daemon.url, tokens[f"writer-{era}"], era) as client:
        contents = [
            f"[{era}] Alice drinks green tea every morning",
            f"[{era}] The team standup is at 9:30 in room Ada",
            f"[{era}] Production database backups run nightly at 02:00",
        ]
        ids = [(await call(client, "memory_add", content=c))["id"] for c in contents]
        assert len(set(ids)) == 3

        found = await call(client, "memory_search", query="what beverage does Alice like", k=3)
        assert found["mode"] == "hybrid" and found["cubes"] == [f"@writer-{era}"]
        assert found["results"][0]["id"] == ids[0]

        memory = await call(client, "memory_get", id=ids[0])
        assert (
            memory["content"] == contents[0] and memory["cube"] == f"@writer-{era}" and memory["version"] == 1
        )

        updated = await call(client, "memory_update", id=ids[0], content=f"[{era}] Alice switched to coffee")
        assert updated["version"] == 2
        history = await call(client, "memory_history", id=ids[0])
        assert [v["content"] for v in history["versions"]] == [
            contents[0],
            f"[{era}] Alice switched to coffee",
        ]

        deleted = await call(client, "memory_delete", id=ids[1])
        assert deleted["deleted_at"] is not None
        after = await call(client, "memory_search", query="standup room Ada", k=10)
        assert ids[1] not in [hit["id"] for hit in after["results"]]
        await call(client, "memory_restore", id=ids[1])
        again = await call(client, "memory_search", query="standup room Ada", k=10)
        assert again["results"][0]["id"] == ids[1]


@pytest.mark.parametrize("era", ERAS)
async def test_every_tool_is_listed_with_truthful_annotations_and_an_output_schema(
    daemon: RunningDaemon, tokens: dict[str, str], era: str
) -> None:
    async with mcp_client(daemon.url, tokens["alice"], era) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    read_only = {name for name, tool in tools.items() if tool.annotations and tool.annotations.read_only_hint}
    assert read_only == {
        "cube_list",
        "cube_members",
        "memory_search",
        "memory_list",
        "memory_get",
        "memory_history",
        "task_list",
        "context_get",
    }
    destructive = {name for name, tool in tools.items() if tool.annotations.destructive_hint}
    assert destructive == {"memory_update", "memory_delete", "cube_unshare", "memory_unlink"}
    for tool in tools.values():
        assert tool.description and len(tool.description) < 400
        assert tool.output_schema and tool.output_schema["type"] == "object"
        assert tool.annotations.open_world_hint is False


async def test_a_batch_is_atomic_and_a_bad_item_is_named(
    daemon: RunningDaemon, tokens: dict[str, str]
) -> None:
    async with mcp_client(daemon.url, tokens["carol"]) as client:
        message = await call_error(
            client, "memory_add_batch", items=[{"content": "one"}, {"content": ""}, {"content": "three"}]
        )
        assert "items[1].content is empty" in message
        assert (await call(client, "memory_list"))["memories"] == []
        added = await call(
            client, "memory_add_batch", items=[{"content": "one"}, {"content": "two", "kind": "fact"}]
        )
        assert added["count"] == 2 and added["cube"] == "@carol"


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("memory_add", {"content": ""}, "Invalid input: content is empty"),
        ("memory_add", {"content": 42}, "content"),
        ("memory_add", {"content": "x", "kind": "gossip"}, "kind"),
        ("memory_add", {"content": "x" * 70_000}, "the limit is 65536 bytes"),
        (
            "memory_add",
            {"content": "x", "cube": "no-such-cube"},
            "Not found: cube 'no-such-cube' does not exist",
        ),
        ("memory_add", {"content": "x", "cube": "../etc"}, "Invalid input: cube name '../etc' is not valid"),
        ("memory_search", {"query": "?!?"}, "Invalid input: query has no words to search for"),
        ("memory_search", {"query": "tea", "k": 0}, "k must be from 1 to 100"),
        ("memory_get", {"id": "mem_0000000000000000"}, "Not found: no memory with id"),
        ("memory_update", {"id": "mem_0000000000000000"}, "Invalid input: nothing to update"),
        ("memory_add_batch", {"items": []}, "Invalid input: items is empty"),
        ("memory_add_batch", {"items": [{"content": "x"}] * 1001}, "the limit is 1000 per batch"),
        ("memory_add_batch", {"items": [{"contnet": "x"}]}, "contnet"),
        ("cube_create", {"name": "@mine"}, "reserved for agents' private cubes"),
    ],
)
async def test_bad_input_is_a_tool_error_that_names_the_problem(
    daemon: RunningDaemon, tokens: dict[str, str], tool: str, arguments: dict[str, Any], expected: str
) -> None:
    async with mcp_client(daemon.url, tokens["bob"]) as client:
        assert expected in await call_error(client, tool, **arguments)


async def test_another_agents_memories_are_invisible(daemon: RunningDaemon, tokens: dict[str, str]) -> None:
    async with mcp_client(daemon.url, tokens["alice"]) as alice:
        secret = await call(alice, "memory_add", content="Alice's locker code is 4711")
    async with mcp_client(daemon.url, tokens["bob"]) as bob:
        assert "Not found" in await call_error(bob, "memory_get", id=secret["id"])
        found = await call(bob, "memory_search", query="locker code 4711")
        assert all(hit["cube"] == "@bob" for hit in found["results"])
        assert [c["name"] for c in (await call(bob, "cube_list"))["cubes"]] == ["@bob"]


async def test_cubes_can_be_created_listed_and_read_as_resources(
    daemon: RunningDaemon, tokens: dict[str, str]
) -> None:
    async with mcp_client(daemon.url, tokens["carol"], "legacy") as client:
        cube = await call(client, "cube_create", name="carol-notes", description="Carol's research notes")
        assert cube["owner"] == "carol"
        assert "already exists" in await call_error(client, "cube_create", name="carol-notes")
        memory = await call(client, "memory_add", content="Read the SQLite WAL docs", cube="carol-notes")
        listing = await call(client, "cube_list")
        assert listing["home_cube"] == "@carol"
        assert {"@carol", "carol-notes"} <= {c["name"] for c in listing["cubes"]}

        cubes = json.loads((await client.read_resource("memos://cubes")).contents[0].text)
        assert "carol-notes" in [c["name"] for c in cubes]
        one = json.loads((await client.read_resource("memos://cubes/carol-notes")).contents[0].text)
        assert one["cube"]["memory_count"] == 1 and one["memories"][0]["id"] == memory["id"]
        read = json.loads((await client.read_resource(f"memos://memories/{memory['id']}")).contents[0].text)
        assert read["content"] == "Read the SQLite WAL docs"
        with pytest.raises(Exception, match="Not found"):
            await client.read_resource("memos://memories/mem_0000000000000000")


@pytest.mark.parametrize("header", [None, "Bearer memos_wrong", "Bearer not-a-memos-token", "Basic abc"])
async def test_a_missing_or_wrong_token_is_refused_with_401(
    daemon: RunningDaemon, header: str | None
) -> None:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if header is not None:
        headers["Authorization"] = header
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            daemon.url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
        )
    assert response.status_code == 401


async def test_a_disabled_agent_is_refused_and_a_new_agent_works_at_once(daemon: RunningDaemon) -> None:
    token = daemon.add_agent("dave")  # created while the daemon runs
    async with mcp_client(daemon.url, token) as client:
        assert (await call(client, "cube_list"))["home_cube"] == "@dave"
    daemon.memos("agent", "disable", "dave")
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            daemon.url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        )
    assert response.status_code == 401


async def test_health_needs_no_token_and_carries_no_data(daemon: RunningDaemon) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{daemon.port}/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
