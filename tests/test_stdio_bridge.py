"""`memos mcp --agent NAME` against a real memosd: the whole memory flow, and surviving a daemon restart."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import (
    REPO,
    RunningDaemon,
    free_port,
    isolated_env,
    memos_command,
    start_daemon,
    stop_daemon,
    write_config,
)
from tests.test_mcp_http import call, call_error

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def bridge(
    config: Path, home: Path, agent: str, token: str, mode: str = "auto"
) -> AsyncIterator[Client]:
    """The SDK's client launching the bridge as a subprocess, as Claude Desktop does."""
    env = isolated_env(home) | {"MEMOS_TOKEN": token}
    command = memos_command("--config", str(config), "mcp", "--agent", agent)
    params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=str(REPO))
    async with Client(params, mode=mode, cache=None) as client:
        yield client


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
