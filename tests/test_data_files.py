"""The files that hold memories: private whatever the umask, one daemon per database file however it is
named, backups that leave nothing behind, and a restore that keeps the replaced database whole."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from daemon.backup import prune_backups
from daemon.sqlite_driver import sqlite_module
from tests.conftest import (
    REPO,
    free_port,
    isolated_env,
    mcp_client,
    memos_at,
    memosd_command,
    start_daemon,
    stop_daemon,
    write_config,
)
from tests.test_mcp_http import call

pytestmark = pytest.mark.anyio


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def list_dir(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


@contextmanager
def umask(value: int) -> Iterator[None]:
    """The umask of this process, hence of the daemons and commands it starts."""
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


async def test_data_and_backups_are_private_under_a_loose_umask(tmp_path: Path) -> None:
    """Steps: under umask 022, start memosd with a backup every 2 s (it creates the data folder and the
    database); write a memory; wait for two scheduled backups. The data folder and backup folder are 0700;
    the database, its WAL and SHM and the backups are 0600; the backup folder holds backups and nothing
    else. A database an older memos left 0644 is 0600 after the next command opens it."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none", extra="[backup]\ninterval_hours = 0.0005\n")
    backups = tmp_path / "data" / "backups"
    with umask(0o022):
        daemon = start_daemon(config, tmp_path, port)
        try:
            token = daemon.add_agent("alice")
            async with mcp_client(daemon.url, token) as client:
                await call(client, "memory_add", content="a private thought")
            data = tmp_path / "data"
            files = {p.name: mode(p) for p in data.iterdir() if p.is_file()}
            assert mode(data) == 0o700
            assert {"memos.db", "memos.db-wal", "memos.db-shm"} <= files.keys()
            assert {name: m for name, m in files.items() if m != 0o600} == {}
            with anyio.fail_after(60):
                while len(await anyio.to_thread.run_sync(list_dir, backups)) < 2:  # noqa: ASYNC110 - files
                    await anyio.sleep(0.2)
        finally:
            assert stop_daemon(daemon) == 0
    assert mode(backups) == 0o700
    made = list_dir(backups)
    assert [(p.name[:6], p.suffix, mode(p)) for p in made] == [("memos-", ".db", 0o600)] * len(made)
    database = tmp_path / "data" / "memos.db"
    database.chmod(0o644)  # as an older memos left it
    memos_at(config, "agent", "list")
    assert mode(database) == 0o600


def test_backups_leave_no_partial_files_and_pruning_removes_stray_ones(tmp_path: Path) -> None:
    """Steps: `memos backup` three times into a folder that also holds what older versions left
    (`.partial-wal`, `.partial-shm`, an abandoned `.partial`); only the backups are written; pruning to
    two keeps the newest two and removes every stray file."""
    config = write_config(tmp_path, port=free_port(), model="none")
    memos_at(config, "agent", "add", "alice")
    folder = tmp_path / "kept"
    folder.mkdir()
    strays = [folder / f"memos-20260101T000000Z.db.partial{suffix}" for suffix in ("", "-wal", "-shm")]
    for stray in strays:
        stray.write_bytes(b"left over")
    made = [folder / f"memos-2026120{i}T000000Z.db" for i in range(3)]
    for target in made:
        memos_at(config, "backup", str(target))
        assert mode(target) == 0o600
    assert sorted(folder.iterdir()) == sorted([*made, *strays])
    removed = prune_backups(folder, keep=2)
    assert sorted(removed) == sorted([made[0], *strays])
    assert sorted(folder.iterdir()) == made[1:]


def test_restore_keeps_the_writes_that_were_only_in_the_replaced_databases_wal(tmp_path: Path) -> None:
    """Steps: start memosd; `memos backup`; write 10 memories (acknowledged); SIGKILL memosd, so the WAL
    holds them; `memos restore` the backup. The kept copy of the replaced database, opened on its own,
    holds all 10 and passes its integrity check."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    daemon = start_daemon(config, tmp_path, port)
    token = daemon.add_agent("alice")
    backup = tmp_path / "before.db"
    memos_at(config, "backup", str(backup))
    written = [f"acknowledged write number {i}" for i in range(10)]

    async def write() -> None:
        async with mcp_client(daemon.url, token) as client:
            for text in written:
                await call(client, "memory_add", content=text)

    anyio.run(write)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=30)
    database = tmp_path / "data" / "memos.db"
    assert Path(f"{database}-wal").stat().st_size > 0

    restored = memos_at(config, "restore", str(backup))
    kept = Path(restored.stdout.strip().rsplit(" ", 1)[-1])
    assert kept.parent == database.parent and kept.name.startswith("memos.db.before-restore-")
    conn = sqlite_module().connect(f"file:{kept}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in conn.execute("SELECT content FROM memories")}
    finally:
        conn.close()
    assert set(written) <= stored
    assert mode(kept) == 0o600
    assert "acknowledged write number 0" not in memos_at(config, "export").stdout  # the backup is in place


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_a_second_daemon_cannot_serve_the_same_file_under_another_name(tmp_path: Path, link: str) -> None:
    """Steps: start memosd on data/memos.db; make another name for the same file (a symlink, a hard link)
    in another folder; a second memosd configured with that name refuses to start and names the first."""
    port = free_port()
    config = write_config(tmp_path, port=port, model="none")
    first = start_daemon(config, tmp_path, port)
    try:
        other = tmp_path / "elsewhere"
        other.mkdir()
        alias = other / "alias.db"
        database = tmp_path / "data" / "memos.db"
        if link == "symlink":
            alias.symlink_to(database)
        else:
            os.link(database, alias)
        second = other / "memos.toml"
        second.write_text(
            f'[server]\nport = {free_port()}\n[storage]\npath = "{alias}"\n[embedder]\nmodel = "none"\n',
            encoding="utf-8",
        )
        result = subprocess.run(
            memosd_command("--config", str(second)),
            env=isolated_env(other), cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert f"another memosd (pid {first.process.pid}) is already serving" in result.stderr
    finally:
        assert stop_daemon(first) == 0
