"""Files and folders that hold memories are private to their owner, whatever the umask.

memosd run by hand inherits the shell's umask (usually 022), which would leave the database, its WAL and
every backup readable by all local users. So the folders memos creates are 0700 and the files 0600, set
explicitly; SQLite gives `-wal`, `-shm` and journal files the mode of their database file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parents as 0700; folders that exist already keep their mode (one may
    be the user's home)."""
    missing: list[Path] = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(folder, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty as 0600 if it does not exist; tighten an existing file of ours to 0600 (with its
    SQLite companions), so data written by an older memos under a loose umask becomes private too."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        for candidate in (path, *(Path(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal"))):
            _tighten(candidate)
        return path
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken more than group and other bits
    finally:
        os.close(fd)
    return path


def _tighten(path: Path) -> None:
    """0600 for a file this user owns that others may read; anything else is left as it is (another
    user's file is that user's to change)."""
    try:
        status = path.stat()
        if status.st_mode & 0o077 and status.st_uid == os.geteuid():
            os.chmod(path, FILE_MODE)
            log.info("made %s private (mode 0600)", path)
    except (FileNotFoundError, PermissionError):
        return
