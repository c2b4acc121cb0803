"""A flood of idle connections from a client without a token never takes the daemon's file descriptors:
memosd raises its open-files limit, bounds its connections below it, refuses the excess cheaply, and its
log stays small."""

from __future__ import annotations

import logging
import resource
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx2

from mcp_server.connections import accept_backlog, connection_budget
from memos_cli.logs import RepeatLimit
from tests.conftest import (
    REPO,
    RunningDaemon,
    free_port,
    isolated_env,
    memosd_command,
    stop_daemon,
    write_config,
)

FD_LIMIT = 256
IDLE_CONNECTIONS = 600


def start_with_fd_limit(home: Path, soft: int, hard: int) -> RunningDaemon:
    """memosd as a real process whose open-files limit is lowered before it starts (as `prlimit` would)."""
    port = free_port()
    config = write_config(home, port=port, model="none")
    log_path = home / "memosd.log"

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            memosd_command("--config", str(config)), stdout=subprocess.DEVNULL, stderr=log_file,
            env=isolated_env(home), cwd=REPO, preexec_fn=lower_limit,
        )  # fmt: skip
    daemon = RunningDaemon(config, port, home, process, log_path)
    deadline = time.monotonic() + 60
    while "memosd ready" not in daemon.log():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"memosd did not become ready:\n{daemon.log()}")
        time.sleep(0.05)
    return daemon


def open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line in /proc/PID/limits")


def idle_connections(port: int, count: int, stack: ExitStack) -> int:
    """Open `count` TCP connections at once, as a flood would, that never send a byte; returns how many the
    kernel completed within 10 s (one whose SYN found the accept queue full is retried by the kernel)."""
    pending = []
    for _ in range(count):
        sock = stack.enter_context(socket.socket())
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        pending.append(sock)
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in pending}
    for fd in by_fd:
        poller.register(fd, select.POLLOUT)
    opened = 0
    deadline = time.monotonic() + 10
    while by_fd and time.monotonic() < deadline:
        for fd, _ in poller.poll(500):
            poller.unregister(fd)
            opened += by_fd.pop(fd).getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    return opened


def healthz(port: int) -> int:
    return httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code


def test_memosd_raises_its_open_files_limit_to_the_hard_limit(tmp_path: Path) -> None:
    daemon = start_with_fd_limit(tmp_path, 128, 2048)
    try:
        assert open_files_limit(daemon.process.pid) == (2048, 2048)
    finally:
        assert stop_daemon(daemon) == 0


def test_idle_connections_beyond_the_fd_limit_leave_healthz_answering_and_the_log_small(
    tmp_path: Path,
) -> None:
    """Steps: memosd under a 256-descriptor limit; 600 idle connections at once, never a byte sent; while they are
    open /healthz answers 200, and again after they close; memosd never ran out of descriptors, logged at
    most a few dozen lines, and stops cleanly."""
    daemon = start_with_fd_limit(tmp_path, FD_LIMIT, FD_LIMIT)
    try:
        lines_before = len(daemon.log().splitlines())
        with ExitStack() as stack:
            opened = idle_connections(daemon.port, IDLE_CONNECTIONS, stack)
            assert opened > FD_LIMIT
            assert healthz(daemon.port) == 200
        assert healthz(daemon.port) == 200
        log = daemon.log()
    finally:
        assert stop_daemon(daemon) == 0
    new_lines = log.splitlines()[lines_before:]
    assert "Too many open files" not in log and "out of system resource" not in log
    assert len(new_lines) <= 30, "\n".join(new_lines[:40])


def records(names: Iterator[str]) -> list[logging.LogRecord]:
    return [logging.LogRecord("asyncio", logging.ERROR, __file__, 1, name, None, None) for name in names]


def test_a_message_repeated_in_a_burst_passes_five_times_a_window_and_then_says_how_many_were_held() -> None:
    now = [0.0]
    limit = RepeatLimit(burst=5, window_s=60.0, clock=lambda: now[0])
    burst = records(f"socket.accept() out of system resource\nsocket: fd={n}" for n in range(1000))
    assert sum(limit.filter(r) for r in burst) == 5
    assert limit.filter(records(["another message"])[0])  # other messages are not held up
    now[0] = 61.0
    (later,) = records(["socket.accept() out of system resource\nsocket: fd=7"])
    assert limit.filter(later)
    assert later.getMessage().endswith("(995 more like this held back in the last minute)")


def test_a_usual_open_files_limit_queues_a_burst_of_connections_as_uvicorn_does() -> None:
    """The accept queue is short only where the descriptors are few: a burst beyond a short queue has its
    SYNs dropped and each client waits a 1 s retransmit."""
    assert accept_backlog(256) == 32
    assert accept_backlog(20_000) == 1250
    assert accept_backlog(1_048_576) == 2048
    assert connection_budget(None, 20_000) > 10_000
