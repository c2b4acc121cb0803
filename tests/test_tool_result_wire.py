"""What a tool call costs memosd beyond the tool's own work changed (issue 17), what a client sees did not: a
result leaves as the SDK's own model would have sent it, in both protocol eras, and the bearer token is
still checked against the database on every request."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import httpx2
import msgspec
import pytest
from jsonschema import Draft202012Validator
from mcp_types import CallToolResult, TextContent

from daemon import SearchResults
from mcp_server.app import build_catalog
from mcp_server.wire import output_schema, to_result
from tests.conftest import RunningDaemon, make_config, mcp_client
from tests.raw_mcp import HANDSHAKE, MODERN, headers

pytestmark = pytest.mark.anyio

RESULT = {
    "results": [
        {
            "id": "mem_0123456789abcdef", "cube": "@ada", "content": "Lena moved the billing service to Zürich — 🚀",
            "kind": "decision", "tags": ["billing", "ops"], "metadata": {"ticket": 42, "nested": {"a": [1.5, None]}},
            "source_agent": "ada", "created_at": "2026-11-30T10:00:00Z", "occurred_at": None, "importance": 0.5,
            "score": 0.1234567890123, "match": {"lexical_rank": 1, "vector_rank": None, "signals": {"bm25": 3.25}},
        }
    ],
    "mode": "hybrid", "cubes": ["@ada", "team"], "note": None,
}  # fmt: skip


def test_a_result_is_sent_as_the_sdks_model_of_it_would_be_with_the_text_the_same_json() -> None:
    value = msgspec.convert(RESULT, SearchResults)
    data = msgspec.to_builtins(value)
    text = msgspec.json.encode(data).decode()
    as_model = CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)
    wire = to_result(value)
    assert wire == as_model.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert json.loads(wire["content"][0]["text"]) == wire["structuredContent"]


def _msgspec_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """The schema msgspec writes for `struct`, with `$defs` and `$ref`s (what tools/list said before)."""
    (ref,), components = msgspec.json.schema_components([struct], ref_template="#/$defs/{name}")
    root = dict(components.pop(ref["$ref"].rsplit("/", 1)[-1]))
    return {**root, "$defs": components} if components else root


def _variants(value: Any) -> list[Any]:
    """`value`, and copies of it each with one part replaced by a value of another JSON type or with a
    name added or removed, at every depth: what a wrong result might look like."""
    out = [value]
    if isinstance(value, dict):
        out += [{k: v for k, v in value.items() if k != key} for key in value]
        out.append({**value, "unexpected": 1})
        for key, item in value.items():
            out += [{**value, key: other} for other in _variants(item)[1:]]
            out += [{**value, key: other} for other in (None, "x", 1, 1.5, True, [], {})]
    elif isinstance(value, list) and value:
        out += [[other, *value[1:]] for other in _variants(value[0])[1:]]
        out += [[other, *value[1:]] for other in (None, "x", 1, [], {})]
    return out


def test_output_schemas_have_no_refs_and_accept_exactly_what_msgspecs_schemas_accept(tmp_path: Any) -> None:
    """The published output schemas are written flat (cheap for the SDK's client to check every result
    against), and judge a search result and hundreds of altered copies of it as msgspec's would."""
    catalog = build_catalog(make_config(tmp_path, model="none"), "test")
    for tool in catalog.tools.values():
        assert "$ref" not in json.dumps(tool.fn_metadata.output_schema), tool.name
    result = msgspec.to_builtins(msgspec.convert(RESULT, SearchResults))
    turn = {
        "id": "mem_0123456789abcdee",
        "content": "Before",
        "offset": -1,
        "occurred_at": None,
        "metadata": {},
    }
    result["results"][0]["context"] = [turn]
    result["time_window"] = {
        "start": "2026-05-01T00:00:00Z",
        "end": "2026-06-01T00:00:00Z",
        "expression": "May",
    }
    flat = Draft202012Validator(output_schema(SearchResults))
    nested = Draft202012Validator(_msgspec_schema(SearchResults))
    variants = _variants(result)
    assert len(variants) > 300
    verdicts = [(flat.is_valid(v), nested.is_valid(v)) for v in variants]
    assert all(a == b for a, b in verdicts)
    assert sum(a for a, _ in verdicts) > 10 and sum(not a for a, _ in verdicts) > 100


def _answer(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC answer, whether the server chose plain JSON or an event stream."""
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return dict(json.loads(data[-1]))
    return dict(response.json())


async def _call(http: httpx2.AsyncClient, url: str, token: str, era: str, tool: str, **arguments: Any) -> Any:
    """A tools/call as raw JSON over HTTP in `era`; the JSON-RPC answer."""
    if era == MODERN:
        envelope = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"_meta": envelope, "name": tool, "arguments": arguments},
        }
        extra = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": tool}
        return _answer(await http.post(url, json=body, headers=headers(token, **extra)))
    initialize = {
        "protocolVersion": HANDSHAKE,
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    opened = await http.post(
        url,
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize},
        headers=headers(token),
    )
    session = headers(
        token, **{"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": HANDSHAKE}
    )
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    body = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    answer = _answer(await http.post(url, json=body, headers=session))
    await http.delete(url, headers=session)
    return answer


@pytest.mark.parametrize("era", [HANDSHAKE, MODERN])
async def test_results_and_failures_on_the_wire_keep_their_shape_in_both_eras(
    lexical_daemon: RunningDaemon, era: str
) -> None:
    """Steps: an agent adds a memory, gets it, searches for it and gets an id that does not exist, each as raw
    JSON over HTTP; every result is the protocol's CallToolResult with the text the same JSON as the
    structured content, a failure is `isError` with our words and nothing else."""
    token = lexical_daemon.add_agent(f"wire-{era}")
    async with httpx2.AsyncClient(timeout=30) as http:
        added = await _call(
            http, lexical_daemon.url, token, era, "memory_add", content=f"Wire shape note {era}"
        )
        got = await _call(
            http, lexical_daemon.url, token, era, "memory_get", id=added["result"]["structuredContent"]["id"]
        )
        found = await _call(
            http, lexical_daemon.url, token, era, "memory_search", query="wire shape note", k=10
        )
        missing = await _call(http, lexical_daemon.url, token, era, "memory_get", id="mem_00000000deadbeef")
    completed = {"resultType": "complete", "_meta": None} if era == MODERN else {}  # _meta: serverInfo
    for answer in (added, got, found):
        result = answer["result"]
        assert set(result) == {"content", "structuredContent", "isError", *completed}, result
        assert result["isError"] is False and result.get("resultType") == completed.get("resultType")
        assert [item["type"] for item in result["content"]] == ["text"]
        assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    assert got["result"]["structuredContent"]["content"] == f"Wire shape note {era}"
    assert [hit["id"] for hit in found["result"]["structuredContent"]["results"]] == [
        got["result"]["structuredContent"]["id"]
    ]
    failure = missing["result"]
    assert set(failure) == {"content", "isError", *completed} and failure["isError"] is True
    assert failure["content"][0]["text"].startswith("Not found: ")


async def test_a_rotated_token_is_refused_on_the_very_next_request_of_an_open_connection(
    lexical_daemon: RunningDaemon,
) -> None:
    """Steps: an agent calls a tool; `memos agent rotate-token` (another process) replaces its token; the
    next request on the same connection with the old token gets 401, and the new token works at once."""
    old = lexical_daemon.add_agent("rotated")
    async with mcp_client(lexical_daemon.url, old) as client:
        assert not (await client.call_tool("cube_list", {})).is_error
        new = lexical_daemon.memos("agent", "rotate-token", "rotated").stdout.strip().splitlines()[-1]
        with pytest.raises(Exception):  # noqa: B017 - the SDK client hides the status; asserted below
            await client.call_tool("cube_list", {})
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx2.AsyncClient(timeout=30) as http:
        refused = await http.post(lexical_daemon.url, json=ping, headers=headers(old))
        assert refused.status_code == 401
    async with mcp_client(lexical_daemon.url, new) as client:
        assert (await client.call_tool("cube_list", {})).structured_content["home_cube"] == "@rotated"  # type: ignore[index]


async def test_an_unfinished_request_head_over_16_kib_is_refused_and_a_large_body_is_not_taken_for_one(
    lexical_daemon: RunningDaemon,
) -> None:
    """Steps: a request head that is 20 KiB and not yet complete gets 400 and the connection closes (the bound
    h11 kept before the parser changed); a tools/call whose body is 200 KiB, sent in one write with its head, is
    answered as usual."""
    token = lexical_daemon.add_agent("big-heads")
    reader, writer = await asyncio.open_connection("127.0.0.1", lexical_daemon.port)
    writer.write(
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{lexical_daemon.port}\r\nX-Pad: {'a' * 20_000}".encode()
    )
    with anyio.fail_after(10):
        status = await reader.readline()
        await reader.read()  # the server closes the connection
    writer.close()
    assert status.startswith(b"HTTP/1.1 400 ")
    query = "billing " * 25_000
    async with httpx2.AsyncClient(timeout=30) as http:
        answer = await _call(http, lexical_daemon.url, token, MODERN, "memory_search", query=query, k=3)
    assert "result" in answer, answer
