"""The stdio bridge against a real upstream MCP server: down, up, restarted, and with a refused token.

Everything is real: the upstream is an `MCPServer` with bearer auth served by uvicorn in a subprocess
(so it can be killed and restarted on the same port), and the bridge is a subprocess driven over stdio
by the SDK's own client, the way a desktop host drives it.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from anyio.abc import Process
from mcp.client import Client, ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.server.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPError

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-agent-a"

UPSTREAM_SRC = r"""
import os
import sys
import anyio
import uvicorn
from pydantic import BaseModel
from mcp.server import MCPServer
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp_types import ToolAnnotations

port, token, marker = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Verifier:
    async def verify_token(self, presented):
        return AccessToken(token=presented, client_id="a", scopes=[]) if presented == token else None


class Echoed(BaseModel):
    text: str


bus = InMemorySubscriptionBus()
mcp = MCPServer(
    "fake-memosd",
    token_verifier=Verifier(),
    auth=AuthSettings(issuer_url="http://127.0.0.1:9", resource_server_url=None),
    subscriptions=bus,
)


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
async def echo(text: str) -> Echoed:
    return Echoed(text=text)


@mcp.tool()
async def fail(reason: str) -> str:
    raise ToolError(f"refused: {reason}")


@mcp.tool()
async def touch() -> str:
    await bus.publish(ResourceUpdated("memo://note"))
    return "touched"


@mcp.tool()
async def slow() -> str:
    with open(marker, "a") as f:
        f.write("ran\n")
    await anyio.sleep(30)
    return "finished"


@mcp.tool()
async def slow_keyed(idempotency_key: str | None = None) -> str:
    # Like a memos write: the first run with a key hangs (the daemon dies), a re-send with it returns.
    seen = open(marker).read().split() if os.path.exists(marker) else []
    with open(marker, "a") as f:
        f.write(f"{idempotency_key}\n")
    if idempotency_key not in seen:
        await anyio.sleep(30)
    return "done once"


@mcp.resource("memo://note")
async def note() -> str:
    return "hello note"


uvicorn.run(mcp.streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Upstream:
    """The fake daemon, as a process we can kill and start again on the same port."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.log = log
        self.marker = log.with_name("slow-calls.txt")  # one line per run of the `slow` tool
        self.proc: Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            args = [sys.executable, "-c", UPSTREAM_SRC, str(self.port), TOKEN, str(self.marker)]
            self.proc = await anyio.open_process(args, stdout=log, stderr=log)
        with anyio.fail_after(20):
            while True:
                assert self.proc.returncode is None, self.log.read_text()
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", self.port)
                except OSError:
                    await anyio.sleep(0.05)
                    continue
                await stream.aclose()
                return

    async def stop(self) -> None:
        if self.proc is not None:
            if self.proc.returncode is None:
                self.proc.kill()
            await self.proc.wait()
            await self.proc.aclose()
        self.proc = None


@asynccontextmanager
async def upstream_at(tmp_path: Path) -> AsyncIterator[Upstream]:
    up = Upstream(_free_port(), tmp_path / "upstream.log")
    try:
        yield up
    finally:
        with anyio.CancelScope(shield=True):
            await up.stop()


def _bridge_params(url: str, token: str, agent: str) -> StdioServerParameters:
    code = (
        "import sys, anyio, daemon, mcp_server.app as app, mcp_server.bridge as b;"
        " anyio.run(b.run_bridge, *sys.argv[1:4], app.build_catalog(daemon.Config(), 'test'))"
    )
    return StdioServerParameters(command=sys.executable, args=["-c", code, url, token, agent], cwd=str(ROOT))


@asynccontextmanager
async def bridge_host(
    url: str, token: str, agent: str, tmp_path: Path, notes: list[Any] | None = None
) -> AsyncIterator[ClientSession]:
    """A handshake-era host (what desktop hosts speak today) talking to the bridge over stdio."""

    async def on_message(message: Any) -> None:
        if notes is not None and isinstance(message, types.ServerNotification):
            notes.append(message)

    with (tmp_path / "bridge.log").open("w") as errlog:
        async with (
            stdio_client(_bridge_params(url, token, agent), errlog=errlog) as (read, write),
            ClientSession(read, write, message_handler=on_message) as session,
        ):
            yield session


def _text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def _changed(notes: list[Any], kind: type[Any]) -> None:
    """Wait until the host has been sent a notification of this kind."""
    with anyio.fail_after(20):
        while not any(isinstance(n, kind) for n in notes):  # noqa: ASYNC110 - notes arrive from the session
            await anyio.sleep(0.05)


@pytest.mark.timeout(60)
def test_relay_survives_daemon_down_and_restart(tmp_path: Path) -> None:
    """Steps: no daemon: initialize, the lists are memos's own, a call says the daemon is unreachable; the
    daemon starts: list_changed is sent and the lists are the daemon's; restarts are ridden out."""
    notes: list[Any] = []

    async def main() -> None:
        async with (
            upstream_at(tmp_path) as upstream,
            bridge_host(upstream.url, TOKEN, "a", tmp_path, notes) as host,
        ):
            url = upstream.url
            # The daemon is not running: the handshake must still be answered at once.
            with anyio.fail_after(10):
                init = await host.initialize()
            assert init.server_info.name == "memos" and init.server_info.version == "test"
            assert init.capabilities.tools is not None and init.capabilities.resources is not None

            with anyio.fail_after(10):
                down = await host.call_tool("echo", {"text": "hi"})
            assert down.is_error
            assert f"memos daemon is not reachable at {url}: start it with `memosd`" in _text(down)
            with anyio.fail_after(10):  # listed from memosd's own definitions, in-process
                assert "memory_add" in {t.name for t in (await host.list_tools()).tools}

            await upstream.start()
            await _changed(notes, types.ToolListChangedNotification)
            await _changed(notes, types.ResourceListChangedNotification)
            tools = {t.name: t for t in (await host.list_tools()).tools}
            assert {"echo", "fail", "touch"} <= tools.keys()
            assert tools["echo"].output_schema is not None
            assert tools["echo"].annotations is not None and tools["echo"].annotations.read_only_hint

            ok = await host.call_tool("echo", {"text": "hi"})
            assert not ok.is_error and ok.structured_content == {"text": "hi"}
            refused = await host.call_tool("fail", {"reason": "nope"})
            assert refused.is_error and "refused: nope" in _text(refused)
            with pytest.raises(MCPError):  # the daemon's own protocol errors come through as errors
                await host.read_resource("memo://missing")

            resources = await host.list_resources()
            assert [str(r.uri) for r in resources.resources] == ["memo://note"]
            read = await host.read_resource("memo://note")
            assert isinstance(read.contents[0], types.TextResourceContents)
            assert read.contents[0].text == "hello note"
            assert (await host.list_resource_templates()).resource_templates == []
            assert (await host.list_prompts()).prompts == []

            # Restart the daemon on the same port: the next call works without restarting the bridge.
            await upstream.stop()
            await upstream.start()
            again = await host.call_tool("echo", {"text": "again"})
            assert not again.is_error and again.structured_content == {"text": "again"}
            await upstream.stop()
            await upstream.start()
            assert "echo" in {t.name for t in (await host.list_tools()).tools}

            # And it goes down for good: a clear message again, not a hang.
            await upstream.stop()
            with anyio.fail_after(10):
                gone = await host.call_tool("echo", {"text": "x"})
            assert gone.is_error and "not reachable" in _text(gone)

    anyio.run(main)


async def call_while_upstream_restarts(upstream: Any, host: Any, tool: str) -> types.CallToolResult:
    """Call `tool` (which marks its start in a file), restart the upstream while it runs, return the result."""
    results: list[types.CallToolResult] = []

    async def call() -> None:
        results.append(await host.call_tool(tool, {}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        for _ in range(200):  # the tool marks its start in a file: poll it
            if upstream.marker.exists():
                break
            await anyio.sleep(0.05)
        await upstream.stop()  # the daemon dies while the call is running
        await upstream.start()  # and is back before the bridge could retry
    return results[0]


@pytest.mark.timeout(60)
def test_call_cut_off_midway_is_reported_not_retried(tmp_path: Path) -> None:
    async def main() -> None:
        async with upstream_at(tmp_path) as upstream:
            await upstream.start()
            async with bridge_host(upstream.url, TOKEN, "a", tmp_path) as host:
                await host.initialize()
                result = await call_while_upstream_restarts(upstream, host, "slow")
                assert result.is_error
                assert "during `slow`: it may or may not have run" in _text(result)
                await anyio.sleep(1.0)
                assert upstream.marker.read_text() == "ran\n"  # never re-sent
                ok = await host.call_tool("echo", {"text": "after"})
                assert not ok.is_error and ok.structured_content == {"text": "after"}

    anyio.run(main)


@pytest.mark.timeout(60)
def test_a_keyed_write_cut_off_midway_is_resent_with_the_same_key(tmp_path: Path) -> None:
    notes: list[Any] = []

    async def main() -> None:
        async with upstream_at(tmp_path) as upstream:
            await upstream.start()
            async with bridge_host(upstream.url, TOKEN, "a", tmp_path, notes) as host:
                await host.initialize()
                await _changed(notes, types.ToolListChangedNotification)  # it knows the daemon's schemas
                result = await call_while_upstream_restarts(upstream, host, "slow_keyed")
                assert not result.is_error, _text(result)
                keys = upstream.marker.read_text().split()
                assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith("bridge-")

    anyio.run(main)


@pytest.mark.timeout(60)
def test_wrong_token_names_the_agent(tmp_path: Path) -> None:
    async def main() -> None:
        async with upstream_at(tmp_path) as upstream:
            await upstream.start()
            async with bridge_host(upstream.url, "not-the-token", "scribe", tmp_path) as host:
                await host.initialize()
                with anyio.fail_after(10):
                    result = await host.call_tool("echo", {"text": "hi"})
                assert result.is_error
                assert "the daemon refused agent scribe's token" in _text(result)
                assert "memos agent rotate-token scribe" in _text(result)
                with anyio.fail_after(10), pytest.raises(MCPError, match="rotate-token scribe"):
                    await host.read_resource("memo://note")

    anyio.run(main)


@pytest.mark.timeout(60)
def test_resource_updates_reach_a_handshake_host(tmp_path: Path) -> None:
    notes: list[Any] = []

    def updated() -> list[types.ResourceUpdatedNotification]:
        return [n for n in notes if isinstance(n, types.ResourceUpdatedNotification)]

    async def main() -> None:
        async with upstream_at(tmp_path) as upstream:
            await upstream.start()
            async with bridge_host(upstream.url, TOKEN, "a", tmp_path, notes) as host:
                init = await host.initialize()
                assert init.capabilities.resources is not None and init.capabilities.resources.subscribe
                # `ClientSession.subscribe_resource` is deprecated (warnings are errors here): send it raw.
                subscribe = types.SubscribeRequest(params=types.SubscribeRequestParams(uri="memo://note"))
                await host.send_request(subscribe, types.EmptyResult)
                # The bridge re-listens upstream with the new URI in the background: poke until it lands.
                with anyio.fail_after(20):
                    while not updated():
                        assert not (await host.call_tool("touch", {})).is_error
                        await anyio.sleep(0.2)
                assert str(updated()[0].params.uri) == "memo://note"

    anyio.run(main)


@pytest.mark.timeout(60)
def test_modern_host_listen_stream(tmp_path: Path) -> None:
    async def main() -> None:
        async with upstream_at(tmp_path) as upstream:
            await upstream.start()
            with (tmp_path / "bridge.log").open("w") as errlog:
                # Client's default mode="auto" discovers the modern era over stdio.
                transport = stdio_client(_bridge_params(upstream.url, TOKEN, "a"), errlog=errlog)
                async with Client(transport, cache=None) as host:
                    assert host.protocol_version == "2026-07-28"
                    ok = await host.call_tool("echo", {"text": "modern"})
                    assert not ok.is_error and ok.structured_content == {"text": "modern"}
                    async with host.listen(resource_subscriptions=["memo://note"]) as sub:
                        got: list[Any] = []

                        async def first_event() -> None:
                            got.append(await sub.__anext__())

                        with anyio.fail_after(20):
                            async with anyio.create_task_group() as tg:
                                tg.start_soon(first_event)
                                while not got:
                                    await host.call_tool("touch", {})
                                    await anyio.sleep(0.2)
                        assert got[0] == ResourceUpdated("memo://note")

    anyio.run(main)


@pytest.mark.timeout(60)
def test_wedged_upstream_client_is_replaced(tmp_path: Path) -> None:
    """A notification POST that fails ends the SDK client's writer but not its task group (SDK 2.3.0):
    every later request then gets "Connection closed". The bridge must retire such a client."""
    from daemon import Config
    from mcp_server.app import build_catalog
    from mcp_server.bridge import _Bridge

    async def main() -> None:
        async with upstream_at(tmp_path) as upstream:
            bridge = _Bridge(upstream.url, TOKEN, "a", build_catalog(Config(), "test"))
            async with anyio.create_task_group() as tg:
                tg.start_soon(bridge.supervise)
                link = bridge._link
                await link.up.wait()
                assert link.client is not None
                # Daemon down: a cancel notification for an unknown request is POSTed and fails.
                await link.client.session._dispatcher.notify("notifications/cancelled", {"requestId": "x"})
                await upstream.start()
                with anyio.fail_after(10):
                    tools = await bridge._relay(lambda c: c.list_tools())
                assert "echo" in {t.name for t in tools.tools}
                assert bridge._link is not link and link.dead.is_set()
                tg.cancel_scope.cancel()

    anyio.run(main)


@pytest.mark.timeout(60)
def test_a_call_still_unanswered_when_the_drain_time_is_up_is_answered_as_abandoned(tmp_path: Path) -> None:
    """Steps: a host sends `slow` (30 s upstream) and closes stdin at once; the bridge, given 2 s to drain,
    answers it with an error that says it may or may not have run, and exits by itself long before `slow`
    would have finished."""
    code = (
        "import sys, functools, anyio, daemon, mcp_server.app as app, mcp_server.bridge as b;"
        " anyio.run(functools.partial(b.run_bridge, drain=2.0), *sys.argv[1:4],"
        " app.build_catalog(daemon.Config(), 'test'))"
    )
    requests = [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "host", "version": "1"},
        }},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slow", "arguments": {}}},
    ]  # fmt: skip

    async def main() -> None:
        async with upstream_at(tmp_path) as upstream:
            await upstream.start()
            args = [sys.executable, "-c", code, upstream.url, TOKEN, "a"]
            async with await anyio.open_process(args, cwd=ROOT, stderr=None) as bridge:
                assert bridge.stdin is not None and bridge.stdout is not None
                await bridge.stdin.send("".join(json.dumps(r) + "\n" for r in requests).encode())
                await bridge.stdin.aclose()
                output = b""
                with anyio.fail_after(20):  # `slow` itself would take 30 s
                    async for chunk in bridge.stdout:
                        output += chunk
                    assert await bridge.wait() == 0
            answers = {m["id"]: m for m in map(json.loads, output.decode().splitlines()) if "id" in m}
            result = answers[1]["result"]
            assert result["isError"] is True
            assert "did not answer in time: a write may or may not have run" in result["content"][0]["text"]
            assert upstream.marker.read_text() == "ran\n"

    anyio.run(main)
