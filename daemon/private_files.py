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
    """Create `path` empty as 0600 if it does not exist; tighten an existing file to 0600 (with its SQLite
    companions), so data written by an older memos under a loose umask becomes private too."""
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = Path(f"{path}{suffix}")
        try:
            if companion.stat().st_mode & 0o077:
                os.chmod(companion, FILE_MODE)
        except FileNotFoundError:
            continue
    return path
