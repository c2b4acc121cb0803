"""Access taken away ends what was open: an agent that is disabled, or whose token is rotated, by the CLI on
the database while memosd runs, stops receiving notifications on the streams it opened before, in both
protocol eras; other agents' streams go on. Against memosd as a real process, with raw HTTP streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import pytest

from tests.conftest import RunningDaemon, mcp_client
from tests.raw_mcp import listen_stream, messages, session_request, session_stream

pytestmark = pytest.mark.anyio
UPDATED = "notifications/resources/updated"


@dataclass
class Tap:
    """What one open stream has carried so far, and whether it has ended."""

    heard: list[dict[str, Any]] = field(default_factory=list)
    ended: anyio.Event = field(default_factory=anyio.Event)

    async def follow(self, response: httpx2.Response) -> None:
        try:
            async for message in messages(response):
                self.heard.append(message)
        finally:
            self.ended.set()

    def updates(self) -> list[str]:
        return [m["params"]["uri"] for m in self.heard if m.get("method") == UPDATED]


@dataclass
class Streams:
    """An agent's two long-lived streams: a modern-era listen stream and a handshake-era session's GET
    stream, both watching its private cube."""

    listen: Tap
    session: Tap

    async def both_ended(self) -> None:
        await self.listen.ended.wait()
        await self.session.ended.wait()


@asynccontextmanager
async def open_streams(daemon: RunningDaemon, token: str, agent: str) -> AsyncIterator[Streams]:
    uri = f"memos://cubes/@{agent}"
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx2.AsyncClient(timeout=60))
        listening = await stack.enter_async_context(listen_stream(http, daemon.url, token, [uri]))
        session, streaming = await stack.enter_async_context(session_stream(http, daemon.url, token))
        subscribed = await http.post(
            daemon.url, **session_request(session, token, "resources/subscribe", {"uri": uri})
        )
        assert subscribed.status_code == 200 and '"error"' not in subscribed.text, subscribed.text
        streams = Streams(Tap(), Tap())
        tg = await stack.enter_async_context(anyio.create_task_group())  # ends before the streams close
        tg.start_soon(streams.listen.follow, listening)
        tg.start_soon(streams.session.follow, streaming)
        try:
            yield streams
        finally:
            tg.cancel_scope.cancel()


async def write_and_hear(daemon: RunningDaemon, token: str, agent: str, streams: Streams) -> None:
    """A write to the agent's cube reaches both its streams."""
    async with mcp_client(daemon.url, token) as client:
        result = await client.call_tool("memory_add", {"content": f"{agent} writes again"})
        assert not result.is_error, result.content
    uri = f"memos://cubes/@{agent}"
    with anyio.fail_after(10):
        while uri not in streams.listen.updates() or uri not in streams.session.updates():  # noqa: ASYNC110
            await anyio.sleep(0.05)


@pytest.mark.parametrize("revoke", ["disable", "rotate-token"])
async def test_revoked_agents_streams_end_in_both_eras_and_others_go_on(
    lexical_daemon: RunningDaemon, revoke: str
) -> None:
    """Steps: `gone` and `stays` each hold a listen stream and a handshake-era GET stream watching their
    private cube; a write by `gone` reaches both its streams; `memos agent disable gone` (or `rotate-token`)
    runs on the database; within 10 s both of gone's streams end (the listen stream with its final result)
    and nothing more is heard on them; a write by `stays` still reaches both of its streams."""
    gone, stays = f"gone-{revoke}", f"stays-{revoke}"
    tokens = {name: lexical_daemon.add_agent(name) for name in (gone, stays)}
    async with (
        open_streams(lexical_daemon, tokens[gone], gone) as revoked,
        open_streams(lexical_daemon, tokens[stays], stays) as bystander,
    ):
        await write_and_hear(lexical_daemon, tokens[gone], gone, revoked)
        await anyio.to_thread.run_sync(lambda: lexical_daemon.memos("agent", revoke, gone))
        with anyio.fail_after(10):
            await revoked.both_ended()
        assert "result" in revoked.listen.heard[-1], revoked.listen.heard[-1]
        assert not bystander.listen.ended.is_set() and not bystander.session.ended.is_set()
        await write_and_hear(lexical_daemon, tokens[stays], stays, bystander)
    assert "ending its event streams and sessions" in lexical_daemon.log()
