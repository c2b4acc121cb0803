"""Task handoff with context preloading and live notifications, over real MCP sessions (HTTP in both eras
and the stdio bridge)."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ResourceUpdated

from tests.conftest import RunningDaemon, mcp_client
from tests.test_mcp_http import call, call_error
from tests.test_stdio_bridge import bridge

pytestmark = pytest.mark.anyio


async def prepare(
    daemon: RunningDaemon, a_name: str, b_name: str, cube: str
) -> tuple[str, str, dict[str, str]]:
    """A and B are in a group; A owns a shared cube B may read, with relevant memories, and a private secret;
    B has a preference."""
    a, b = daemon.add_agent(a_name), daemon.add_agent(b_name)
    daemon.relate(f"team-of-{a_name}", a_name, b_name)  # so A can name B
    ids = {}
    async with mcp_client(daemon.url, a) as client:
        await call(client, "cube_create", name=cube)
        await call(client, "cube_share", cube=cube, grantee=b_name, permission="read")
        ids["shared"] = (
            await call(
                client,
                "memory_add",
                cube=cube,
                content="The payments API retries POSTs with idempotency keys",
            )
        )["id"]
        await call(client, "memory_add", cube=cube, content="The office plants are watered on Fridays")
        ids["private"] = (
            await call(client, "memory_add", content="Payments API admin password is hunter2 (private to A)")
        )["id"]
    async with mcp_client(daemon.url, b) as client:
        ids["preference"] = (
            await call(client, "memory_add", content="Answer in short bullet points", kind="preference")
        )["id"]
    return a, b, ids


def check_pack(pack: dict[str, Any], ids: dict[str, str]) -> None:
    items = {item["id"]: item["reason"] for item in pack["items"]}
    assert items.get(ids["shared"]) == "relevant"
    assert items.get(ids["preference"]) == "preference"
    assert ids["private"] not in items and "hunter2" not in pack["markdown"]
    assert "look at the retry code first" in pack["markdown"]  # A's notes
    assert pack["tokens"] <= pack["budget_tokens"]


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_b_is_told_its_context_is_ready_and_the_pack_holds_only_what_b_may_read(
    daemon: RunningDaemon, era: str
) -> None:
    """Steps: B subscribes to its context resource; A hands B a task naming the shared cube; B is notified
    that its context is ready; the pack has A's relevant shared memory, B's preference and A's notes, and
    nothing from A's private cube; B accepts and finishes the task; A sees it done."""
    a, b, ids = await prepare(daemon, f"ha-{era}", f"hb-{era}", f"team-h-{era}")
    b_name = f"hb-{era}"
    uri = f"memos://agents/{b_name}/context"
    notified = anyio.Event()
    async with (
        subscribed(daemon.url, b, era, uri, notified) as b_client,
        mcp_client(daemon.url, a) as a_client,
    ):
        task = await call(
            a_client, "task_handoff", to_agent=b_name, title="Fix retries in the payments API",
            description="Duplicate charges after timeouts", cubes=[f"team-h-{era}"], notes="look at the retry code first",
        )  # fmt: skip
        with anyio.fail_after(30):
            await notified.wait()
        pack = await call(b_client, "context_get", task_id=task["id"])
        check_pack(pack, ids)
        listed = await call(b_client, "task_list", role="to")
        assert [t["id"] for t in listed["tasks"]] == [task["id"]]
        await call(b_client, "task_accept", task_id=task["id"])
        current = await b_client.read_resource(uri)
        assert task["id"] in current.contents[0].text
        done = await call(b_client, "task_update", task_id=task["id"], status="done", notes="fixed in v2")
        assert done["status"] == "done"
        assert (await call(a_client, "task_list", role="from"))["tasks"][0]["status"] == "done"
        assert "Not found" in await call_error(a_client, "context_get", task_id="task_0000000000000000")


@asynccontextmanager
async def subscribed(
    url: str, token: str, era: str, uri: str, notified: anyio.Event
) -> AsyncIterator[Client]:
    """A client for B that sets `notified` when `uri` is reported updated, in the given era."""
    if era == "legacy":

        async def on_message(message: Any) -> None:
            root = getattr(message, "root", message)
            if isinstance(root, types.ResourceUpdatedNotification) and str(root.params.uri) == uri:
                notified.set()

        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
        async with (
            http,
            Client(
                streamable_http_client(url, http_client=http),
                mode="legacy",
                cache=None,
                message_handler=on_message,
            ) as client,
        ):
            with warnings.catch_warnings():  # deprecated for the modern era; handshake-era hosts still use it
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.subscribe_resource(uri)
            yield client
        return
    async with mcp_client(url, token) as client, client.listen(resource_subscriptions=[uri]) as sub:

        async def watch() -> None:
            async for event in sub:
                if isinstance(event, ResourceUpdated) and event.uri == uri:
                    notified.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            yield client
            tg.cancel_scope.cancel()


async def test_the_handoff_works_through_the_stdio_bridge(daemon: RunningDaemon) -> None:
    a, b, ids = await prepare(daemon, "ba", "bb", "team-bridge")
    uri = "memos://agents/bb/context"
    notified = anyio.Event()
    async with (
        bridge(daemon.config_path, daemon.home, "bb", b) as b_client,
        b_client.listen(resource_subscriptions=[uri]) as sub,
        bridge(daemon.config_path, daemon.home, "ba", a) as a_client,
    ):

        async def watch() -> None:
            async for event in sub:
                if isinstance(event, ResourceUpdated) and event.uri == uri:
                    notified.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.sleep(0.5)  # the bridge opens its upstream listen stream
            task = await call(
                a_client, "task_handoff", to_agent="bb", title="Fix retries in the payments API",
                cubes=["team-bridge"], notes="look at the retry code first",
            )  # fmt: skip
            with anyio.fail_after(30):
                await notified.wait()
            check_pack(await call(b_client, "context_get", task_id=task["id"]), ids)
            tg.cancel_scope.cancel()


async def test_nobody_is_told_about_what_they_cannot_read(daemon: RunningDaemon) -> None:
    owner, outsider = daemon.add_agent("n-owner"), daemon.add_agent("n-outsider")
    async with mcp_client(daemon.url, owner) as a:
        await call(a, "cube_create", name="n-secret")
    async with mcp_client(daemon.url, outsider) as b:
        with pytest.raises(Exception, match="Not found"):
            async with b.listen(resource_subscriptions=["memos://cubes/n-secret"]):
                pass
        with pytest.raises(Exception, match="Not found"):
            async with b.listen(resource_subscriptions=["memos://agents/n-owner/context"]):
                pass
