"""One error contract, the same in both protocol eras: what a failed tool call and a failed resource read look
like on the wire, against memosd running as a real process (lexical only: this is about errors, not meaning).

A tool error is an `isError` result whose text starts with the kind of failure in our words (`Invalid input:`,
`Not found:`, `Conflict:` …) and names the argument; never the SDK's `Error executing tool X`, never
pydantic's text or links. A resource that cannot be read for the caller's reasons is JSON-RPC -32602.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from daemon import errors as daemon_errors
from daemon.errors import MemosError
from mcp_server.errors import describe
from tests.conftest import (
    REPO,
    RunningDaemon,
    isolated_env,
    mcp_client,
    memos_command,
)

pytestmark = pytest.mark.anyio
ERAS = ["legacy", "auto"]  # handshake era and modern era
KINDS = (
    "Invalid input: ", "Not found: ", "Permission denied: ", "Conflict: ", "Busy: ", "Unavailable: ",
    "Storage error: ", "Storage full: ", "Storage damaged: ", "Not authenticated: ", "Configuration error: ",
)  # fmt: skip
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture(scope="module")
def tokens(lexical_daemon: RunningDaemon) -> dict[str, str]:
    return {name: lexical_daemon.add_agent(name) for name in ("erin", "frank", "gail")}


def test_every_error_class_reads_as_its_kind() -> None:
    """Every class of the hierarchy, including ones added later, maps to one of the contract's kinds."""
    classes = [
        value
        for value in vars(daemon_errors).values()
        if isinstance(value, type) and issubclass(value, MemosError) and value is not MemosError
    ]
    assert len(classes) >= 11
    for cls in classes:
        assert describe(cls("what went wrong")).startswith(KINDS), cls
    assert describe(daemon_errors.InvalidInput("k must be 1-100")) == "Invalid input: k must be 1-100"
    assert describe(daemon_errors.Overloaded("queue full")) == "Busy: queue full"


async def tool_error(client: Any, tool: str, arguments: dict[str, Any]) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    assert result.structured_content is None
    return str(result.content[0].text)


# (tool, arguments, the whole message or its start)
TOOL_ERRORS = [
    ("memory_add", {"content": ""}, "Invalid input: content is empty"),
    ("memory_add", {"content": 42}, "Invalid input: content must be a string"),
    ("memory_add", {}, "Invalid input: content is required"),
    (
        "memory_add",
        {"content": "x", "kind": "gossip"},
        "Invalid input: kind must be one of 'fact', 'preference', 'event', 'procedure', 'note' or 'message'",
    ),
    ("memory_add", {"content": "x", "cubes": ["@erin"]}, "Invalid input: unknown argument 'cubes' (did you mean 'cube'?)"),
    ("memory_add", {"content": "x", "tags": [1]}, "Invalid input: tags[0] must be a string"),
    ("memory_search", {"query": "tea", "k": 1.5}, "Invalid input: k must be a whole number"),
    ("memory_search", {"query": "tea", "k": 0}, "Invalid input: k must be from 1 to 100"),
    ("memory_search", {"qeury": "tea"}, "Invalid input: unknown argument 'qeury' (did you mean 'query'?)"),
    (
        "memory_add_batch",
        {"items": [{"content": "x", "tgas": ["a"]}]},
        "Invalid input: unknown argument 'tgas' in items[0] (did you mean 'tags'?)",
    ),
    ("memory_add_batch", {"items": [{"content": "x", "kind": 3}]}, "Invalid input: items[0].kind must be one of"),
    ("memory_get", {"id": "mem_0000000000000000"}, "Not found: no memory with id"),
    ("cube_list", {"verbose": True}, "Invalid input: unknown argument 'verbose'; this tool takes no arguments"),
    ("cube_create", {"name": "@mine"}, "Invalid input: "),
    ("task_accept", {"task_id": "task_0000000000000000"}, "Not found: "),
    ("memory_serch", {"query": "tea"}, "Not found: no tool named 'memory_serch'; did you mean 'memory_search'?"),
]  # fmt: skip


@pytest.mark.parametrize("era", ERAS)
async def test_tool_errors_read_as_our_words_in_both_eras(
    lexical_daemon: RunningDaemon, tokens: dict[str, str], era: str
) -> None:
    """Each bad call's message starts with its kind and names the problem, the same in both eras; none
    carries the SDK's prefix or pydantic's text; a Conflict reads as one too."""
    async with mcp_client(lexical_daemon.url, tokens["erin"], era) as client:
        for tool, arguments, expected in TOOL_ERRORS:
            message = await tool_error(client, tool, arguments)
            assert message.startswith(expected), (tool, arguments, message)
            assert "Error executing tool" not in message and "pydantic" not in message, message
            assert "Input should" not in message and "validation error" not in message, message
        await client.call_tool("cube_create", {"name": f"room-{era}"})
        conflict = await tool_error(client, "cube_create", {"name": f"room-{era}"})
        assert conflict.startswith("Conflict: "), conflict


@pytest.mark.parametrize("era", ERAS)
async def test_a_failed_tool_call_is_logged_as_failed_not_ok(
    lexical_daemon: RunningDaemon, tokens: dict[str, str], era: str
) -> None:
    """The request log's outcome of a call that returned a tool error is `tool_error`, so a person reading
    the log sees failures; a call that worked is `ok`."""
    async with mcp_client(lexical_daemon.url, tokens["frank"], era) as client:
        await tool_error(client, "memory_get", {"id": "mem_" + "0" * 16})
        await client.call_tool("cube_list", {})
    lines = [json.loads(line) for line in lexical_daemon.log().splitlines() if line.startswith("{")]
    calls = [line for line in lines if line.get("method") == "tools/call" and line.get("agent") == "frank"]
    outcomes = {(line["target"], line["outcome"]) for line in calls}
    assert {("memory_get", "tool_error"), ("cube_list", "ok")} <= outcomes, calls


@pytest.mark.parametrize("era", ERAS)
async def test_a_misnamed_argument_writes_nothing(
    lexical_daemon: RunningDaemon, tokens: dict[str, str], era: str
) -> None:
    """Steps: gail makes a shared cube; memory_add with `cubes: [that cube]` (meaning `cube`) is refused
    naming `cubes`; neither her private cube nor the shared one holds anything."""
    async with mcp_client(lexical_daemon.url, tokens["gail"], era) as client:
        await client.call_tool("cube_create", {"name": f"team-{era}"})
        message = await tool_error(
            client, "memory_add", {"content": f"meant for the team ({era})", "cubes": [f"team-{era}"]}
        )
        assert message == "Invalid input: unknown argument 'cubes' (did you mean 'cube'?)"
        for cube in ("@gail", f"team-{era}"):
            listed = await client.call_tool("memory_list", {"cubes": [cube], "include_deleted": True})
            assert not [m for m in listed.structured_content["memories"] if era in m["content"]]


def headers(token: str, **extra: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        **extra,
    }


def rpc(method: str, params: dict[str, Any], request_id: int = 1) -> bytes:
    """A JSON-RPC request as a client that writes `Infinity` and `NaN` (as JavaScript's JSON5 or Python's
    json do) would send it."""
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return json.dumps(message, allow_nan=True).encode()


def answer(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC answer, whether the server chose plain JSON or an event stream."""
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return dict(json.loads(data[-1]))
    return dict(response.json())


async def raw_call(daemon: RunningDaemon, token: str, era: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """memory_add with `arguments` as raw JSON over HTTP, in `era`."""
    async with httpx2.AsyncClient(timeout=30) as http:
        if era == "auto":
            params = {"_meta": ENVELOPE, "name": "memory_add", "arguments": arguments}
            extra = {
                "MCP-Protocol-Version": "2026-07-28",
                "Mcp-Method": "tools/call",
                "Mcp-Name": "memory_add",
            }
            response = await http.post(
                daemon.url, content=rpc("tools/call", params), headers=headers(token, **extra)
            )
            return answer(response)
        initialize = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        }
        opened = await http.post(daemon.url, content=rpc("initialize", initialize), headers=headers(token))
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        initialized = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode()
        await http.post(daemon.url, content=initialized, headers=headers(token, **session))
        params = {"name": "memory_add", "arguments": arguments}
        response = await http.post(
            daemon.url, content=rpc("tools/call", params, 2), headers=headers(token, **session)
        )
        await http.delete(daemon.url, headers=headers(token, **session))
        return answer(response)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"metadata": {"score": float("inf")}}, "metadata.score is Infinity"),
        ({"metadata": {"runs": [1, {"t": float("nan")}]}}, "metadata.runs[1].t is NaN"),
        ({"importance": float("-inf")}, "importance is -Infinity"),
    ],
)
async def test_infinity_and_nan_are_refused_not_stored_as_null(
    lexical_daemon: RunningDaemon, tokens: dict[str, str], era: str, arguments: dict[str, Any], named: str
) -> None:
    content = f"non-finite {era} {named}"
    reply = await raw_call(lexical_daemon, tokens["frank"], era, {"content": content, **arguments})
    result = reply["result"]
    assert result["isError"], result
    assert result["content"][0]["text"] == f"Invalid input: {named}: only finite numbers can be stored"
    async with mcp_client(lexical_daemon.url, tokens["frank"]) as client:
        listed = await client.call_tool("memory_list", {})
    assert content not in [m["content"] for m in listed.structured_content["memories"]]


@pytest.mark.parametrize("era", ERAS)
async def test_resources_that_cannot_be_read_are_invalid_params(
    lexical_daemon: RunningDaemon, tokens: dict[str, str], era: str
) -> None:
    """A malformed task id, a task that does not exist, a missing memory, another agent's cube, memory and
    context: each is -32602 with our words, never -32603 (internal error)."""
    async with mcp_client(lexical_daemon.url, tokens["erin"], "auto") as erin:
        secret = (await erin.call_tool("memory_add", {"content": "Erin's secret"})).structured_content
    uris = {
        "memos://tasks/not-a-task/context": "Invalid input: ",
        "memos://tasks/task_0000000000000000/context": "Not found: ",
        "memos://memories/mem_0000000000000000": "Not found: ",
        f"memos://memories/{secret['id']}": "Not found: ",
        "memos://cubes/@erin": "Not found: ",
        "memos://cubes/no-such-cube": "Not found: ",
        "memos://agents/erin/context": "Not found: ",
    }
    async with mcp_client(lexical_daemon.url, tokens["frank"], era) as frank:
        for uri, kind in uris.items():
            with pytest.raises(MCPError) as raised:
                await frank.read_resource(uri)
            assert raised.value.error.code == INVALID_PARAMS, (uri, raised.value.error)
            assert raised.value.error.message.startswith(kind), (uri, raised.value.error)


def test_through_the_stdio_bridge_the_contract_holds_and_infinity_is_refused(
    lexical_daemon: RunningDaemon, tokens: dict[str, str]
) -> None:
    """Steps: a host writes raw JSON lines to `memos mcp`: memory_add with Infinity in metadata is refused
    naming it (the bridge's own client would have sent null); a misnamed argument and a bad task id in a
    resource URI read exactly as over HTTP."""
    env = isolated_env(lexical_daemon.home) | {"MEMOS_TOKEN": tokens["gail"]}
    command = memos_command("--config", str(lexical_daemon.config_path), "mcp", "--agent", "gail")
    host = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO,
        text=True,
    )  # fmt: skip
    assert host.stdin is not None and host.stdout is not None
    answers: dict[int, dict[str, Any]] = {}

    def ask(request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert host.stdin is not None and host.stdout is not None
        host.stdin.write(rpc(method, params, request_id).decode() + "\n")
        host.stdin.flush()
        while request_id not in answers:
            message = json.loads(host.stdout.readline())
            if "id" in message:
                answers[message["id"]] = message
        return answers[request_id]

    try:
        initialize = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        }
        assert "result" in ask(1, "initialize", initialize)
        host.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        infinite = {
            "name": "memory_add",
            "arguments": {"content": "bridged", "metadata": {"a": float("inf")}},
        }
        result = ask(2, "tools/call", infinite)["result"]
        assert result["isError"] and result["content"][0]["text"] == (
            "Invalid input: metadata.a is Infinity: only finite numbers can be stored"
        )
        misnamed = {"name": "memory_add", "arguments": {"content": "bridged", "cubes": ["@gail"]}}
        result = ask(3, "tools/call", misnamed)["result"]
        assert (
            result["content"][0]["text"] == "Invalid input: unknown argument 'cubes' (did you mean 'cube'?)"
        )
        error = ask(4, "resources/read", {"uri": "memos://tasks/not-a-task/context"})["error"]
        assert error["code"] == INVALID_PARAMS and error["message"].startswith("Invalid input: ")
    finally:
        host.stdin.close()
        host.wait(timeout=30)
        host.stdout.close()
