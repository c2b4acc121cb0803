"""One daemon per database: an exclusive lock on `<database>.lock`, held for the daemon's lifetime.

The kernel drops the lock when the process dies, however it dies, so a crash never leaves a stale lock.
Admin commands do not take it: they use short transactions that the running daemon tolerates.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from daemon.errors import ConfigError


class InstanceLock:
    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"another memosd (pid {holder}) is already serving {self.path.with_suffix('')}; stop it first,"
                " or give this one another [storage] path"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def held_by_other(self) -> bool:
        """True if a running daemon holds the lock (for commands that must not run beside one)."""
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing releases a lock we may have just taken
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
