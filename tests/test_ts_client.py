"""memos driven by a client nobody here wrote: the official MCP TypeScript SDK from the npm registry.

`tests/ts_client/compat.mjs` connects over streamable HTTP with the bearer header, and over stdio through
`memos mcp` as a desktop host would; it checks every tool's input and output schema and every structured
result with Ajv (which that SDK uses), calls the main tools, reads a resource and receives an update
notification. The SDK is installed here with `npm ci` from the lock file when node_modules is missing; a
registry that cannot be reached fails the test, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    REPO,
    RunningDaemon,
    free_port,
    isolated_env,
    start_daemon,
    stop_daemon,
    write_config,
)

CLIENT_DIR = REPO / "tests" / "ts_client"
SDK = CLIENT_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: the TypeScript-SDK compatibility test needs Node.js >= 18 and npm"
        )
    return path


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the client's packages installed exactly as package-lock.json pins them."""
    node = _tool("node")
    if not SDK.is_file():
        try:
            installed = subprocess.run(
                [_tool("npm"), "ci", "--no-audit", "--no-fund", "--fetch-retries=1"],
                cwd=CLIENT_DIR, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail("`npm ci` in tests/ts_client did not finish in 300 s: is the npm registry reachable?")
        if installed.returncode != 0:
            pytest.fail(
                "`npm ci` in tests/ts_client failed (is the npm registry reachable? it installs"
                f" @modelcontextprotocol/sdk):\n{installed.stdout}\n{installed.stderr}"
            )
    return node


@pytest.fixture(scope="module")
def lexical_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """memosd without a model: the client checks the protocol, not meaning."""
    home = tmp_path_factory.mktemp("memosd-ts")
    port = free_port()
    running = start_daemon(write_config(home, port=port, model="none"), home, port)
    try:
        running.add_agent("ts-peer")
        yield running
    finally:
        stop_daemon(running)


def _run_client(
    node: str, options: dict[str, Any], when_waiting: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """Run the client to its end; if it says it is waiting (for memosd to start), call `when_waiting`."""
    with subprocess.Popen(
        [node, "compat.mjs", json.dumps(options)],
        cwd=CLIENT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as client:  # fmt: skip
        assert client.stdout is not None
        if when_waiting is not None and json.loads(client.stdout.readline() or "{}").get("waiting"):
            when_waiting()
        try:
            out, err = client.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            client.kill()
            out, err = client.communicate()
    assert client.returncode == 0, f"the TypeScript client failed:\n{err}\n{out}"
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return summary


def _bridge_command(config: Path, agent: str, home: Path, token: str) -> dict[str, Any]:
    """The client options that launch `memos mcp` as a desktop host would."""
    args = ["-m", "memos_cli.memos", "--config", str(config), "mcp", "--agent", agent]
    env = isolated_env(home) | {"MEMOS_TOKEN": token}
    return {"transport": "stdio", "command": sys.executable, "args": args, "env": env, "cwd": str(REPO)}


@pytest.mark.timeout(400)
def test_the_official_typescript_sdk_works_over_streamable_http(
    node: str, lexical_daemon: RunningDaemon
) -> None:
    token = lexical_daemon.add_agent("ts-http")
    lexical_daemon.relate("ts-http-team", "ts-http", "ts-peer")  # so it can hand a task to ts-peer
    summary = _run_client(
        node, {"transport": "http", "url": lexical_daemon.url, "token": token, "peer": "ts-peer"}
    )
    assert summary["server"]["name"] == "memos" and summary["tools"] >= 20
    assert summary["checkedResults"] >= 11 and summary["updated"].startswith("memos://memories/mem_")


@pytest.mark.timeout(400)
def test_the_official_typescript_sdk_works_over_stdio_through_memos_mcp(
    node: str, lexical_daemon: RunningDaemon
) -> None:
    token = lexical_daemon.add_agent("ts-stdio")
    lexical_daemon.relate("ts-stdio-team", "ts-stdio", "ts-peer")
    options = _bridge_command(lexical_daemon.config_path, "ts-stdio", lexical_daemon.home, token)
    summary = _run_client(node, options | {"peer": "ts-peer"})
    assert summary["server"]["name"] == "memos" and summary["tools"] >= 20
    assert summary["checkedResults"] >= 11 and summary["updated"].startswith("memos://memories/mem_")


@pytest.mark.timeout(400)
def test_a_typescript_host_started_before_memosd_gets_its_tools_without_a_restart(
    node: str, tmp_path: Path
) -> None:
    """Steps: the host launches `memos mcp` with no daemon: it lists the tools, a call says memosd is not
    reachable; memosd starts: the SDK is sent tools and resources list_changed, and the whole flow works."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    offline = RunningDaemon(config, port, tmp_path, None, tmp_path / "x")  # type: ignore[arg-type]
    token, _ = offline.add_agent("ts-first"), offline.add_agent("ts-peer")
    offline.relate("ts-team", "ts-first", "ts-peer")
    daemons: list[RunningDaemon] = []
    try:
        summary = _run_client(
            node,
            _bridge_command(config, "ts-first", tmp_path, token) | {"peer": "ts-peer", "startedFirst": True},
            when_waiting=lambda: daemons.append(start_daemon(config, tmp_path, port)),
        )
    finally:
        for running in daemons:
            stop_daemon(running)
    assert summary["listChanged"] == ["resources", "tools"] and summary["checkedResults"] >= 11
