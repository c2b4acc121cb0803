"""memosd as a service: the systemd notify protocol on a real datagram socket, signals, one instance per
database, and no acknowledged write lost to a SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.conftest import (
    REPO,
    RunningDaemon,
    free_port,
    isolated_env,
    mcp_client,
    memosd_command,
    start_daemon,
    stop_daemon,
    write_config,
)
from tests.raw_mcp import listen_stream, messages, session_stream
from tests.test_mcp_http import call


def receive_all(sock: socket.socket, until: str, timeout: float = 30.0) -> list[str]:
    """Datagrams (decoded) until one contains `until`."""
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if until in messages[-1]:
            return messages
    raise AssertionError(f"no {until!r} among {messages}")


def test_memosd_speaks_the_notify_protocol(tmp_path: Path) -> None:
    """Steps: bind a datagram socket; start memosd with NOTIFY_SOCKET and WATCHDOG_USEC; see READY=1 with a
    STATUS, then WATCHDOG=1 pings; SIGTERM; see STOPPING=1; memosd exits 0."""
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify_path))
        port = free_port()
        env = isolated_env(tmp_path) | {"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"}
        process = subprocess.Popen(
            memosd_command("--config", str(write_config(tmp_path, port=port, model="none"))),
            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            ready = receive_all(sock, "READY=1")
            assert any(f"STATUS=serving http://127.0.0.1:{port}/mcp" in m for m in ready)
            pings = receive_all(sock, "WATCHDOG=1")
            pings += receive_all(sock, "WATCHDOG=1")
            process.send_signal(signal.SIGTERM)
            stopping = receive_all(sock, "STOPPING=1")
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert sum("WATCHDOG=1" in m for m in pings + stopping) >= 2


def test_a_second_daemon_on_the_same_database_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    first = start_daemon(config, tmp_path, port)
    try:
        second_config = tmp_path / "second.toml"
        second_config.write_text(
            config.read_text().replace(f"port = {port}", f"port = {free_port()}"), encoding="utf-8"
        )
        result = subprocess.run(
            memosd_command("--config", str(second_config)),
            env=isolated_env(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 1
        assert f"another memosd (pid {first.process.pid}) is already serving" in result.stderr
    finally:
        assert stop_daemon(first) == 0


@pytest.mark.anyio
async def test_sigterm_during_a_stream_of_writes_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """Steps: four writers add memories as fast as they can and record each acknowledged id; SIGTERM arrives
    mid-stream; memosd exits 0; after a restart every acknowledged id is there, intact."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    daemon = start_daemon(config, tmp_path, port)
    token = daemon.add_agent("writer")
    acknowledged: dict[str, str] = {}

    async def writer(n: int) -> None:
        try:
            async with mcp_client(daemon.url, token) as client:
                for i in range(10_000):
                    content = f"writer {n} memory {i}"
                    result = await client.call_tool("memory_add", {"content": content})
                    if result.is_error:
                        return
                    acknowledged[result.structured_content["id"]] = content
        except Exception:  # noqa: BLE001 - the daemon going away mid-call is the point of this test
            return

    async with anyio.create_task_group() as tg:
        for n in range(4):
            tg.start_soon(writer, n)
        while len(acknowledged) < 100:  # noqa: ASYNC110 - waiting for the writers to get going
            await anyio.sleep(0.01)
        daemon.process.send_signal(signal.SIGTERM)
    assert await anyio.to_thread.run_sync(daemon.process.wait, 30) == 0

    restarted = start_daemon(config, tmp_path, port)
    try:
        async with mcp_client(restarted.url, token) as client:
            stored: dict[str, str] = {}
            cursor = None
            while True:
                arguments = {"limit": 500} | ({"cursor": cursor} if cursor else {})
                page = await call(client, "memory_list", **arguments)
                stored |= {m["id"]: m["content"] for m in page["memories"]}
                cursor = page["next_cursor"]
                if cursor is None:
                    break
    finally:
        stop_daemon(restarted)
    missing = {i: c for i, c in acknowledged.items() if stored.get(i) != c}
    assert not missing, f"{len(missing)} acknowledged writes lost"
    assert len(acknowledged) >= 100


def test_sighup_reloads_the_policy_files(tmp_path: Path) -> None:
    port = free_port()
    daemon: RunningDaemon = start_daemon(write_config(tmp_path, port=port, model="none"), tmp_path, port)
    try:
        os.kill(daemon.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloading the policy files" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        assert daemon.process.poll() is None
    finally:
        assert stop_daemon(daemon) == 0


@pytest.mark.anyio
async def test_sigterm_with_a_host_connected_stops_at_once_and_quietly(tmp_path: Path) -> None:
    """Steps: a host holds the streams it normally holds open: a modern-era subscriptions/listen stream and a
    handshake-era session's GET stream; SIGTERM; both streams end, memosd exits 0 well within uvicorn's 5 s
    drain limit (the streams did not hold the stop up), and its stderr has no ERROR line, no traceback and no
    worker thread said to be stuck."""
    port = free_port()
    daemon = start_daemon(write_config(tmp_path, port=port, model="none"), tmp_path, port)
    token = daemon.add_agent("host")
    try:
        async with (
            httpx2.AsyncClient(timeout=30) as http,
            listen_stream(http, daemon.url, token, ["memos://cubes"]) as listening,
            session_stream(http, daemon.url, token) as (_, streaming),
        ):
            heard = messages(listening)
            acknowledged = await anext(heard)
            assert acknowledged["method"] == "notifications/subscriptions/acknowledged"
            started = time.monotonic()
            daemon.process.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                last = [message async for message in heard][-1]
                assert "result" in last, last  # ended on purpose: the listen result is the last frame
                async for _ in messages(streaming):
                    pass
            code = await anyio.to_thread.run_sync(daemon.process.wait, 30)
            took = time.monotonic() - started
    finally:
        stop_daemon(daemon)
    print(f"\nstopped in {took:.2f} s with a listen stream and a GET stream open")
    assert code == 0
    assert took < 4.0, daemon.log()
    log = daemon.log()
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert '"level": "error"' not in log, log
    assert "blocked worker thread" not in log, log  # anyio's idle workers end as the loop closes
