"""Online backups with SQLite's backup API, restore, and the scheduled backup with retention.

A backup copies the whole database in one step: it reads one consistent snapshot (WAL lets the daemon keep
writing meanwhile), and the copy is checked before it is kept. Restore refuses while a daemon serves the
database, checks the backup first, and keeps the file it replaces.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from daemon import sqlite_driver
from daemon.errors import ConfigError, InvalidInput, StoreCorrupt
from daemon.instance_lock import InstanceLock
from daemon.store_errors import translated
from daemon.supervision import retrying

log = logging.getLogger(__name__)


def _check(path: Path) -> None:
    module = sqlite_driver.sqlite_module()
    try:
        conn = module.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        finally:
            conn.close()
    except module.Error as exc:
        raise StoreCorrupt(f"{path} is not a usable memos backup: {exc}") from exc
    if result != "ok":
        raise StoreCorrupt(f"{path} failed its integrity check: {result}")


@translated()
def backup_database(database: Path, target: Path) -> Path:
    """Copy the live database to `target` (a file, or a folder for a timestamped name); blocking."""
    if target.is_dir():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = target / f"memos-{stamp}.db"
    if target.exists():
        raise InvalidInput(f"{target} exists already; choose a new file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    source = sqlite_driver.connect(str(database), read_only=True)
    module = sqlite_driver.sqlite_module()
    try:
        copy = module.connect(str(partial))
        try:
            source.backup(copy)  # all pages in one step: one consistent snapshot
        finally:
            copy.close()
    except BaseException:
        partial.unlink(missing_ok=True)  # a refused copy (a full disk) leaves nothing behind
        raise
    finally:
        source.close()
    _check(partial)
    os.replace(partial, target)
    return target


def restore_database(backup: Path, database: Path) -> Path:
    """Put `backup` in place of the database; returns where the replaced file was kept. Blocking."""
    if InstanceLock(database).held_by_other():
        raise ConfigError(
            f"memosd is serving {database}; stop it before restoring (systemctl --user stop memosd)"
        )
    if not backup.is_file():
        raise InvalidInput(f"no backup file at {backup}")
    _check(backup)
    kept = database.with_name(
        database.name + ".before-restore-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    )
    database.parent.mkdir(parents=True, exist_ok=True)
    if database.exists():
        os.replace(database, kept)
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    shutil.copyfile(backup, database)
    return kept


def prune_backups(folder: Path, keep: int) -> list[Path]:
    backups = sorted(folder.glob("memos-*.db"))
    doomed = backups[: max(0, len(backups) - keep)]
    for path in doomed:
        path.unlink()
    return doomed


async def scheduled_backups(
    database: Path, folder: Path, interval_s: float, keep: int,
    *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:  # fmt: skip
    """Back up every `interval_s` seconds and keep the newest `keep` copies; runs until cancelled."""
    task_status.started()
    while True:
        await anyio.sleep(interval_s)
        # A full disk is retried with back-off; any other failure stops the daemon (daemon/supervision.py).
        made = await retrying(
            "the scheduled backup", lambda: anyio.to_thread.run_sync(backup_database, database, folder)
        )
        pruned = prune_backups(folder, keep)
        log.info("scheduled backup %s written; %d old backups removed", made.name, len(pruned))
