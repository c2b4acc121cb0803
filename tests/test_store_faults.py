"""Store faults: every sqlite error leaves the store as one of our errors, chosen by result code; a database
locked by another process or a full disk is refused clearly and survived; background loops retry what is
retryable and stop the daemon loudly on anything else."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from daemon import (
    Conflict,
    InvalidInput,
    MemosError,
    StorageFull,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    sqlite_driver,
)
from daemon.store import Store
from daemon.store_errors import PRIMARY, translate
from tests.conftest import (
    REPO,
    RunningDaemon,
    free_port,
    mcp_client,
    memos_command,
    start_daemon,
    stop_daemon,
    write_config,
)

pytestmark = pytest.mark.anyio

RETRYABLE_CODES = {5: StoreBusy, 6: StoreBusy, 13: StorageFull, 15: StoreBusy}


def sqlite_error(code: int, message: str = "boom") -> Exception:
    module = sqlite_driver.sqlite_module()
    exc = module.OperationalError(message)
    exc.sqlite_errorcode = code
    exc.sqlite_errorname = f"CODE_{code}"
    return exc


def test_every_sqlite_result_code_is_translated_to_one_of_our_errors() -> None:
    """The table covers every primary result code; extended codes follow their primary code; only a locked
    database, a full disk and a WAL-lock race are retryable; an error without a code is a StoreError."""
    assert set(PRIMARY) == set(range(1, 29))
    module = sqlite_driver.sqlite_module()
    for name in dir(module):  # the driver's named codes (those it knows) agree with the table
        code = getattr(module, name)
        if name.startswith("SQLITE_") and name.isupper() and isinstance(code, int) and 0 < code < 29:
            if name in ("SQLITE_ERROR", "SQLITE_OK"):
                continue
            assert code in PRIMARY, name
    for code in range(1, 29):
        for extended in (code, code | (1 << 8), code | (3 << 8)):
            error = translate(sqlite_error(extended))
            assert isinstance(error, MemosError)
            assert error.retryable == (code in RETRYABLE_CODES), code
            assert "boom" in str(error)
    for code, cls in RETRYABLE_CODES.items():
        assert type(translate(sqlite_error(code))) is cls
    assert type(translate(sqlite_error(11))) is StoreCorrupt
    assert "memos check" in str(translate(sqlite_error(267)))  # SQLITE_CORRUPT_VTAB: a damaged FTS index
    assert type(translate(sqlite_error(19))) is Conflict
    assert type(translate(sqlite_error(18))) is InvalidInput
    assert type(translate(sqlite_driver.sqlite_module().ProgrammingError("closed"))) is StoreError


async def test_real_sqlite_errors_leave_the_store_translated_and_the_store_keeps_working(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "m.db")
    try:
        with pytest.raises(Conflict, match=r"UNIQUE constraint failed: meta\.key"):
            async with store.write() as conn:
                await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'one')")
                await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'two')")
        with pytest.raises(StoreError, match="no such table: nope"):
            async with store.read() as conn:
                await conn.rows("SELECT * FROM nope")
        async with store.write() as conn:  # nothing of the failed write was kept, and writing goes on
            assert await conn.rows("SELECT * FROM meta WHERE key = 'k'") == []
            await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'three')")
    finally:
        await store.close()


# --- the real daemon ---------------------------------------------------------------------------------------


def log_records(daemon: RunningDaemon) -> list[dict[str, Any]]:
    """The daemon's JSON log records (its stderr is not a terminal), without its plain start/stop lines."""
    return [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def add(client: Client, content: str) -> Any:
    return await client.call_tool("memory_add", {"content": content})


async def found(client: Client, query: str) -> list[str]:
    result = await client.call_tool("memory_search", {"query": query})
    assert not result.is_error, text_of(result)
    return [hit["content"] for hit in result.structured_content["results"]]


@pytest.fixture
def lexical_daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    port = free_port()
    running = start_daemon(write_config(tmp_path, port=port, model="none"), tmp_path, port)
    try:
        yield running
    finally:
        stop_daemon(running)


async def test_a_write_lock_held_by_another_process_is_a_clear_busy_error_and_the_daemon_goes_on(
    lexical_daemon: RunningDaemon,
) -> None:
    """1. another process takes the write lock (BEGIN IMMEDIATE); 2. a tool call that writes gets a Busy tool
    error, the CLI one line on stderr, reads are served meanwhile (also to an agent whose first request
    cannot record its last-seen time), and the audit loop's write waits and is retried; 3. the lock is released; 4. writes succeed again, and the log has no traceback."""
    daemon = lexical_daemon
    alice, bob, carol = daemon.add_agent("alice"), daemon.add_agent("bob"), daemon.add_agent("carol")
    cli_results: list[subprocess.CompletedProcess[str]] = []

    async def newcomer_reads() -> None:  # its first request cannot record its last-seen time: served anyway
        async with mcp_client(daemon.url, carol, mode="legacy") as newcomer:
            assert await found(newcomer, "zebra") == []

    async def run_cli() -> None:
        command = memos_command(
            "--config", str(daemon.config_path), "add", "--agent", "alice", "from the CLI"
        )
        cli_results.append(
            await anyio.to_thread.run_sync(
                lambda: subprocess.run(
                    command, capture_output=True, text=True, env=daemon.env, cwd=REPO, timeout=60
                )
            )
        )

    async with mcp_client(daemon.url, alice) as client, mcp_client(daemon.url, bob) as intruder:
        added = await add(client, "the zebra crossing is blue")
        assert not added.is_error
        await intruder.list_tools()  # both agents' last-seen times are recorded before the lock is taken
    other = sqlite_driver.connect(str(daemon.config_path.parent / "data" / "memos.db"))
    other.execute("BEGIN IMMEDIATE")
    try:
        await newcomer_reads()
        async with mcp_client(daemon.url, alice) as client, mcp_client(daemon.url, bob) as intruder:
            denied = await intruder.call_tool("memory_get", {"id": added.structured_content["id"]})
            assert denied.is_error  # and its audit record is queued for the audit loop to write
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_cli)
                assert await found(client, "zebra") == ["the zebra crossing is blue"]  # reads go on
                with anyio.fail_after(60):
                    refused = await add(client, "a platypus written while locked")
            assert refused.is_error
            assert text_of(refused) == (
                "Busy: the database is locked by another process (SQLITE_BUSY: database is locked);"
                " try again in a moment"
            )
            (cli,) = cli_results
            stderr = cli.stderr
            assert cli.returncode == 1
            assert stderr == (
                "memos: the database is locked by another process (SQLITE_BUSY: database is locked);"
                " try again in a moment\n"
            )
    finally:
        other.execute("ROLLBACK")
        other.close()
    async with mcp_client(daemon.url, alice) as client:
        with anyio.fail_after(60):
            assert not (await add(client, "written after the lock was released")).is_error
        assert await found(client, "platypus") == []
    with anyio.fail_after(60):
        while "writing 1 audit records succeeded after" not in daemon.log():  # noqa: ASYNC110
            await anyio.sleep(0.1)
    retries = [(r["level"], r["message"]) for r in log_records(daemon) if r["logger"] == "daemon.supervision"]
    assert len(retries) == 2  # logged once when it first failed, once when it succeeded again
    assert retries[0] == (
        "warning",
        "writing 1 audit records failed, retrying with back-off until it succeeds: the database is locked"
        " by another process (SQLITE_BUSY: database is locked); try again in a moment",
    )
    assert re.fullmatch(r"writing 1 audit records succeeded after \d+ failed attempts", retries[1][1])
    assert [r for r in log_records(daemon) if r["level"] in ("error", "critical")] == []
    assert daemon.process.poll() is None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs for the data directory (needs root, as CI has)."""
    mountpoint = tmp_path / "data"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the file system refuses another byte."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_refuses_the_write_whole_and_writes_resume_once_space_is_freed(
    tmp_path: Path, small_disk: Path
) -> None:
    """1. the daemon's data directory is a small tmpfs; 2. it is filled; 3. a write is refused with a clear
    Storage full error and nothing of it is kept; reads are served; 4. space is freed; 5. writes succeed;
    6. with the disk full again, memosd still stops cleanly."""
    port = free_port()
    daemon = start_daemon(write_config(tmp_path, port=port, model="none"), tmp_path, port)
    try:
        alice = daemon.add_agent("alice")
        async with mcp_client(daemon.url, alice) as client:
            assert not (await add(client, "written before the disk filled")).is_error
            filler = fill(small_disk)
            refused = await add(client, "a zebra written to a full disk " + "x" * 20000)
            assert refused.is_error
            assert text_of(refused).startswith(
                "Storage full: the disk holding the database is full (SQLITE_FULL"
            )
            assert text_of(refused).endswith("nothing was written: free some space and try again")
            assert await found(client, "written before") == ["written before the disk filled"]
            filler.unlink()
            with anyio.fail_after(30):
                added = await add(client, "written after space was freed")
            assert not added.is_error, text_of(added)
            assert await found(client, "zebra") == []
            listed = await client.call_tool("memory_list", {})
            contents = sorted(m["content"] for m in json.loads(text_of(listed))["memories"])
            assert contents == ["written after space was freed", "written before the disk filled"]
        assert daemon.process.poll() is None
        assert [r for r in log_records(daemon) if r["level"] in ("error", "critical")] == []
        fill(small_disk)  # and full again when it is told to stop
    finally:
        stop_daemon(daemon)
    assert daemon.process.returncode == 0  # the status it could not record does not fail the shutdown


async def test_a_fault_a_loop_cannot_retry_stops_the_daemon_loudly(lexical_daemon: RunningDaemon) -> None:
    """The audit table disappears under the running daemon: the audit loop's next write fails with an error
    that retrying cannot fix, so memosd logs it as CRITICAL with the traceback and exits non-zero."""
    daemon = lexical_daemon
    alice, bob = daemon.add_agent("alice"), daemon.add_agent("bob")
    async with mcp_client(daemon.url, alice) as client:
        added = await add(client, "alice's own")
    other = sqlite_driver.connect(str(daemon.config_path.parent / "data" / "memos.db"))
    other.execute("DROP TABLE audit")
    other.close()
    async with mcp_client(daemon.url, bob) as intruder:
        assert (await intruder.call_tool("memory_get", {"id": added.structured_content["id"]})).is_error
    assert daemon.process.wait(timeout=30) == 1
    (critical,) = [r for r in log_records(daemon) if r["level"] == "critical"]
    assert (critical["logger"], critical["message"]) == (
        "daemon.supervision",
        "background task audit failed; memosd is stopping",
    )
    assert critical["exception"].startswith("Traceback")
    assert "no such table: audit" in critical["exception"]
    assert daemon.log().endswith("memosd: database error (SQLITE_ERROR: no such table: audit)\n")
