"""`memos mcp --agent NAME` against a real memosd: the whole memory flow, and surviving a daemon restart."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.server.subscriptions import ResourcesListChanged, ToolsListChanged
from mcp.shared.exceptions import MCPError

from mcp_server.app import INSTRUCTIONS, build_catalog
from tests.conftest import (
    REPO,
    RunningDaemon,
    free_port,
    isolated_env,
    make_config,
    mcp_client,
    memos_command,
    start_daemon,
    stop_daemon,
    write_config,
)
from tests.test_mcp_http import call, call_error

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def bridge(
    config: Path, home: Path, agent: str, token: str, mode: str = "auto", notes: list[Any] | None = None
) -> AsyncIterator[Client]:
    """The SDK's client launching the bridge as a subprocess, as Claude Desktop does; server notifications
    go to `notes`."""

    async def on_message(message: Any) -> None:
        if notes is not None and isinstance(message, types.ServerNotification):
            notes.append(message)

    env = isolated_env(home) | {"MEMOS_TOKEN": token}
    command = memos_command("--config", str(config), "mcp", "--agent", agent)
    params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=str(REPO))
    async with Client(params, mode=mode, cache=None, message_handler=on_message) as client:
        yield client


async def listed(client: Client) -> dict[str, list[dict[str, Any]]]:
    """Everything a host lists, as plain data."""
    return {
        "tools": [t.model_dump() for t in (await client.list_tools()).tools],
        "resources": [r.model_dump() for r in (await client.list_resources()).resources],
        "templates": [t.model_dump() for t in (await client.list_resource_templates()).resource_templates],
    }


@pytest.mark.parametrize("era", ["legacy", "auto"])
async def test_the_memory_flow_works_through_the_stdio_bridge(daemon: RunningDaemon, era: str) -> None:
    """Steps: add 3; search by meaning; get; update (history has 2 versions); delete (gone from search)."""
    token = daemon.add_agent(f"desktop-{era}")
    async with bridge(daemon.config_path, daemon.home, f"desktop-{era}", token, era) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"memory_add", "memory_search", "memory_history"} <= tools
        ids = [
            (await call(client, "memory_add", content=text))["id"]
            for text in (
                "The user prefers answers in British English",
                "The user's cat is called Miso",
                "Quarterly reports are due on the 5th",
            )
        ]
        found = await call(client, "memory_search", query="what is the name of the pet", k=3)
        assert found["results"][0]["id"] == ids[1]
        assert (await call(client, "memory_get", id=ids[0]))["content"].endswith("British English")
        await call(client, "memory_update", id=ids[0], content="The user prefers answers in American English")
        assert len((await call(client, "memory_history", id=ids[0]))["versions"]) == 2
        await call(client, "memory_delete", id=ids[2])
        after = await call(client, "memory_search", query="quarterly reports due", k=5)
        assert ids[2] not in [hit["id"] for hit in after["results"]]
        assert "Invalid input" in await call_error(client, "memory_add", content="")


async def test_the_bridge_answers_at_once_without_a_daemon_and_recovers_when_it_starts(
    tmp_path: Path, model_dir: Path
) -> None:
    """Steps: start the bridge with no daemon; it initializes and says the daemon is unreachable; start
    memosd; the next call works; restart memosd; the bridge carries on without being restarted."""
    port = free_port()
    config = write_config(tmp_path, port=port, model=str(model_dir))
    token = RunningDaemon(config, port, tmp_path, None, tmp_path / "x").add_agent("desktop")  # type: ignore[arg-type]
    started = time.monotonic()
    async with bridge(config, tmp_path, "desktop", token) as client:
        assert time.monotonic() - started < 30  # hosts give a stdio server 10-30 s; it never waits for memosd
        assert "memos daemon is not reachable" in await call_error(client, "memory_add", content="early")
        daemon = start_daemon(config, tmp_path, port)
        try:
            first = await call(client, "memory_add", content="Written through the bridge")
        finally:
            stop_daemon(daemon)
        daemon = start_daemon(config, tmp_path, port)
        try:
            assert (await call(client, "memory_get", id=first["id"]))[
                "content"
            ] == "Written through the bridge"
        finally:
            stop_daemon(daemon)


async def test_a_wrong_token_through_the_bridge_names_the_agent(daemon: RunningDaemon) -> None:
    async with bridge(daemon.config_path, daemon.home, "mallory", "memos_not-a-real-token") as client:
        message = await call_error(client, "memory_add", content="x")
    assert "mallory" in message and "token" in message


async def test_a_bridge_given_another_agents_token_refuses_to_write_into_its_cube(
    daemon: RunningDaemon,
) -> None:
    """Steps: `memos mcp --agent ida` started with jon's token (a copy-paste slip in a host's config): a
    write is refused, naming both agents and the fix, and jon's cube stays empty."""
    ida, jon = daemon.add_agent("ida"), daemon.add_agent("jon")
    async with bridge(daemon.config_path, daemon.home, "ida", jon) as client:
        message = await call_error(client, "memory_add", content="meant for ida")
    assert "--agent ida" in message and "jon's token" in message and "--agent jon" in message
    async with bridge(daemon.config_path, daemon.home, "jon", jon) as client:
        assert (await call(client, "memory_list"))["memories"] == []
        assert (await call(client, "memory_add", content="jon's own"))["cube"] == "@jon"
    assert ida


async def test_the_catalog_describes_memosd_without_opening_the_store_or_the_model(tmp_path: Path) -> None:
    config = make_config(tmp_path, str(tmp_path / "no-model-here"))
    catalog = build_catalog(config, "9.9")
    server = catalog.server
    assert (server.name, server.version, server.instructions) == ("memos", "9.9", INSTRUCTIONS)
    tools = await server.list_tools()
    assert {t.name for t in tools} == set(catalog.tools) and "memory_search" in catalog.tools
    assert all(t.output_schema for t in tools)
    assert await server.list_resources() and await server.list_resource_templates()
    assert not Path(config.database_path).parent.exists()  # no database, not even its directory


@pytest.mark.parametrize("era", ["legacy", "auto"])
async def test_a_host_started_before_memosd_gets_its_guidance_and_tools_and_is_told_when_it_is_up(
    tmp_path: Path, era: str
) -> None:
    """Steps: start the bridge with no daemon; it introduces itself with memosd's name, version and usage
    guidance, and lists every tool, resource and template; a call says memosd is not reachable; start
    memosd: the host is sent tools and resources list_changed and the call works; what the bridge said
    and listed is what memosd says and lists over HTTP."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    token = RunningDaemon(config, port, tmp_path, None, tmp_path / "x").add_agent("early")  # type: ignore[arg-type]
    notes: list[Any] = []
    async with bridge(config, tmp_path, "early", token, era, notes) as host:
        assert host.instructions == INSTRUCTIONS
        assert host.server_info is not None and host.server_info.name == "memos"
        before = await listed(host)
        assert (
            "memory_add" in {t["name"] for t in before["tools"]}
            and before["resources"]
            and before["templates"]
        )
        with anyio.fail_after(20):
            down = await call_error(host, "memory_add", content="too early")
        assert f"memos daemon is not reachable at http://127.0.0.1:{port}/mcp" in down and "memosd" in down

        async def told() -> set[type[Any]]:
            """Wait for tools and resources list_changed, in whichever era the host speaks."""
            if era == "legacy":
                kinds = {types.ToolListChangedNotification, types.ResourceListChangedNotification}
                while not kinds <= {type(n) for n in notes}:  # noqa: ASYNC110 - notes arrive from the session
                    await anyio.sleep(0.05)
                return kinds
            events: set[type[Any]] = set()
            async with host.listen(tools_list_changed=True, resources_list_changed=True) as sub:
                daemon_started.set()
                async for event in sub:
                    events.add(type(event))
                    if {ToolsListChanged, ResourcesListChanged} <= events:
                        return events
            raise AssertionError("the listen stream ended before list_changed came")

        daemon_started = anyio.Event()
        daemons: list[RunningDaemon] = []
        try:
            with anyio.fail_after(40):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(told)
                    if era == "auto":
                        await daemon_started.wait()  # the modern era has no replay: listen first
                    daemons.append(await anyio.to_thread.run_sync(start_daemon, config, tmp_path, port))
            written = await call(host, "memory_add", content="Written by a host that started first")
            assert (await call(host, "memory_get", id=written["id"]))["content"].endswith("started first")
            after = await listed(host)
            async with mcp_client(daemons[0].url, token, era) as direct:
                assert (direct.instructions, direct.server_info) == (host.instructions, host.server_info)
                assert after == before == await listed(direct)
        finally:
            for running in daemons:
                stop_daemon(running)


async def _outcome(client: Client, tool: str, arguments: dict[str, Any]) -> Any:
    try:
        result = await client.session.send_request(
            types.CallToolRequest(params=types.CallToolRequestParams(name=tool, arguments=arguments)),
            types.CallToolResult,
        )
    except MCPError as err:
        return ("json-rpc error", err.code, err.message)
    return ("result", result.is_error, [c.model_dump() for c in result.content], result.structured_content)


async def _read_outcome(client: Client, uri: str) -> Any:
    try:
        return ("contents", [c.model_dump() for c in (await client.read_resource(uri)).contents])
    except MCPError as err:
        return ("json-rpc error", err.code, err.message)


BAD_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("memory_add", {}),  # a required argument missing
    ("memory_add", {"content": ""}),
    ("memory_add", {"content": "x", "importance": "very"}),  # wrong type
    ("memory_add", {"content": "x", "kind": "gossip"}),  # not one of the allowed values
    ("memory_add_batch", {"items": [{"content": "a", "colour": "red"}]}),  # an unknown field
    ("memory_supersede", {"id": "mem_0000000000000000", "content": "y"}),  # no such memory
    ("memory_get", {"id": "mem_0000000000000000"}),
    ("memory_search", {"query": "x", "k": 0}),
    ("cube_share", {"cube": "nope", "grantee": "bob", "permission": "own"}),
    ("cube_create", {"name": "bad name!"}),
    ("task_accept", {"task_id": "task_nope"}),
    ("task_handoff", {"to_agent": "nobody-here", "title": "t"}),
    ("no_such_tool", {}),
]
BAD_READS = [
    "memos://memories/mem_0000000000000000",
    "memos://tasks/task_nope/context",
    "memos://cubes/nope",
    "memos://agents/someone-else/context",
    "memos://nothing",
]


@pytest.mark.parametrize("era", ["legacy", "auto"])
async def test_errors_through_the_bridge_read_exactly_as_over_http(daemon: RunningDaemon, era: str) -> None:
    """The same bad calls and reads, straight over HTTP and through `memos mcp`: the same result, error
    flag, message and JSON-RPC code; the key the bridge adds to writes never shows."""
    token = daemon.add_agent(f"errors-{era}")
    async with (
        mcp_client(daemon.url, token, era) as direct,
        bridge(daemon.config_path, daemon.home, f"errors-{era}", token, era) as relayed,
    ):
        for tool, arguments in BAD_CALLS:
            over_http = await _outcome(direct, tool, arguments)
            assert over_http[:2] in (("result", True), ("json-rpc error", over_http[1])), over_http
            assert await _outcome(relayed, tool, arguments) == over_http, (tool, arguments)
        for uri in BAD_READS:
            over_http = await _read_outcome(direct, uri)
            assert over_http[0] == "json-rpc error", over_http
            assert await _read_outcome(relayed, uri) == over_http, uri


async def test_writes_in_flight_when_the_host_closes_stdin_are_answered_before_the_bridge_exits(
    daemon: RunningDaemon,
) -> None:
    """Steps: a host sends the handshake and five memory_add calls down the bridge's stdin and closes it at
    once, as a host that is quitting does; it reads stdout to the end. Every call is answered (none with
    "Connection closed", none dropped), the bridge then exits by itself, and the daemon holds exactly the
    five memories the answers name."""
    token = daemon.add_agent("quitting-host")
    texts = [f"Note {n} written just before the host quit" for n in range(5)]
    requests = [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "quitting-host", "version": "1"},
        }},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        *({"jsonrpc": "2.0", "id": n + 1, "method": "tools/call",
           "params": {"name": "memory_add", "arguments": {"content": text}}} for n, text in enumerate(texts)),
    ]  # fmt: skip
    process = await anyio.open_process(
        memos_command("--config", str(daemon.config_path), "mcp", "--agent", "quitting-host"),
        env=isolated_env(daemon.home) | {"MEMOS_TOKEN": token},
        cwd=REPO,
        stderr=None,
    )
    async with process:
        assert process.stdin is not None and process.stdout is not None
        await process.stdin.send("".join(json.dumps(r) + "\n" for r in requests).encode())
        await process.stdin.aclose()
        output = b""
        with anyio.fail_after(60):
            async for chunk in process.stdout:
                output += chunk
            assert await process.wait() == 0
    answers = {m["id"]: m for m in map(json.loads, output.decode().splitlines()) if "id" in m}
    assert sorted(answers) == [0, 1, 2, 3, 4, 5], output.decode()
    results = [answers[n + 1].get("result") for n in range(5)]
    assert all(r is not None and not r.get("isError") for r in results), answers
    ids = {r["structuredContent"]["id"] for r in results if r is not None}
    async with mcp_client(daemon.url, token) as client:
        stored = (await call(client, "memory_list"))["memories"]
    assert {m["id"] for m in stored} == ids
    assert sorted(m["content"] for m in stored) == sorted(texts)
