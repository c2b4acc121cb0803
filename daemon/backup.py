"""Online backups with SQLite's backup API, restore, and the scheduled backup with retention.

A backup copies the whole database in one step: it reads one consistent snapshot (WAL lets the daemon keep
writing meanwhile), and the copy is checked before it is kept. A backup is one self-contained file (rollback
journal mode), so it never has `-wal`/`-shm` companions, and like the database it is private (0600).
Restore refuses while a daemon serves the database, checks the backup first, and keeps the database it
replaces whole: its WAL (acknowledged writes not yet folded into the main file) goes into the kept copy.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import anyio
from anyio.abc import TaskStatus

from daemon import sqlite_driver
from daemon.errors import ConfigError, InvalidInput, StoreCorrupt
from daemon.instance_lock import InstanceLock
from daemon.private_files import private_dir, private_file
from daemon.rows import read_rows
from daemon.store_errors import translated
from daemon.supervision import retrying

log = logging.getLogger(__name__)


def _check(path: Path) -> None:
    module = sqlite_driver.sqlite_module()
    try:
        # immutable: a read-only look that creates no -wal/-shm beside the file (a backup is one file)
        conn = module.connect(f"file:{quote(str(path))}?mode=ro&immutable=1", uri=True)
        try:
            result = read_rows(conn, "PRAGMA quick_check")[0]["quick_check"]
            read_rows(conn, "SELECT count(*) AS migrations FROM schema_migrations")  # is it a memos database?
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
    private_dir(target.parent)
    partial = private_file(target.with_name(target.name + ".partial"))
    # Held while the copy is made, so pruning knows this partial file is in use (flock, not SQLite's locks).
    claim = os.open(partial, os.O_RDONLY)
    try:
        fcntl.flock(claim, fcntl.LOCK_EX)
        source = sqlite_driver.connect(str(database), read_only=True)
        module = sqlite_driver.sqlite_module()
        try:
            copy = module.connect(str(partial), isolation_level=None)
            try:
                source.backup(copy)  # all pages in one step: one consistent snapshot
                # The copy inherits WAL mode from the source; a backup is one file, without -wal or -shm.
                copy.execute("PRAGMA journal_mode = DELETE")
            finally:
                copy.close()
        finally:
            source.close()
        _check(partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)  # a refused copy (a full disk) leaves nothing behind
        raise
    finally:
        os.close(claim)
    return target


def restore_database(backup: Path, database: Path) -> Path:
    """Put `backup` in place of the database; returns where the replaced database was kept. Blocking.

    The replaced database is kept whole: its `-wal` and `-shm` move with it, and the WAL is then folded into
    the kept file, so writes acknowledged before an unclean stop are in the kept copy too.
    """
    database = database.resolve()  # replace the file a symlink points to, not the symlink
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
    private_dir(database.parent)
    if database.exists():
        for suffix in ("-wal", "-shm", ""):  # the main file last: a crash midway leaves the WAL with it
            source = Path(f"{database}{suffix}")
            if source.exists():
                os.replace(source, Path(f"{kept}{suffix}"))
        _fold_wal(kept)
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    partial = private_file(database.with_name(database.name + ".restoring"))
    shutil.copyfile(backup, partial)
    os.replace(partial, database)
    return kept


def _fold_wal(database: Path) -> None:
    """Checkpoint a WAL into its database file and leave one self-contained file (rollback journal)."""
    if not Path(f"{database}-wal").exists():
        return
    module = sqlite_driver.sqlite_module()
    try:
        conn = sqlite_driver.connect(str(database))
        try:
            conn.execute("PRAGMA journal_mode = DELETE")  # checkpoints the whole WAL, then removes it
        finally:
            conn.close()
    except module.Error as exc:  # a damaged database is often why one restores: keep its files as they are
        log.warning("the replaced database %s keeps its WAL beside it (%s)", database, exc)


def prune_backups(folder: Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` backups, and what failed or older backups left behind: partial
    copies no backup is writing and stray `-wal`/`-shm` files."""
    backups = sorted(folder.glob("memos-*.db"))
    doomed = backups[: max(0, len(backups) - keep)]
    for suffix in ("-wal", "-shm", "-journal"):
        doomed += sorted(folder.glob(f"memos-*.db.partial{suffix}"))
    doomed += [p for p in sorted(folder.glob("memos-*.db.partial")) if not _in_use(p)]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def _in_use(partial: Path) -> bool:
    """True while a backup is writing this partial copy (it holds a flock on it)."""
    try:
        fd = os.open(partial, os.O_RDONLY)
    except FileNotFoundError:
        return True  # gone meanwhile: nothing to remove
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


async def scheduled_backups(
    database: Path, folder: Path, interval_s: float, keep: int,
    *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:  # fmt: skip
    """Back up every `interval_s` seconds and keep the newest `keep` copies; runs until cancelled."""
    private_dir(folder)
    task_status.started()
    while True:
        await anyio.sleep(interval_s)
        # A full disk is retried with back-off; any other failure stops the daemon (daemon/supervision.py).
        made = await retrying(
            "the scheduled backup", lambda: anyio.to_thread.run_sync(backup_database, database, folder)
        )
        pruned = prune_backups(folder, keep)
        log.info("scheduled backup %s written; %d old backups removed", made.name, len(pruned))
