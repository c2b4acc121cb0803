"""One daemon per database: an exclusive `flock` on the database file itself, held for the daemon's lifetime.

The lock belongs to the file (its inode), not to a name, so a symlink, a hard link or a bind mount that
reaches the same file meets the same lock. The kernel drops it when the process dies, however it dies, so a
crash never leaves a stale lock. `flock` locks are apart from the POSIX locks SQLite takes on the same file,
so they never get in its way; but closing any descriptor of the file drops the POSIX locks of the whole
process, so this descriptor is closed only after the store (see `release`). The error names the holder's
pid, from /proc/locks where there is one, else from `<database>.lock` beside the resolved file. Admin commands do not take the lock:
they use short transactions that the running daemon tolerates.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from daemon.errors import ConfigError
from daemon.private_files import private_file


class InstanceLock:
    def __init__(self, database: Path) -> None:
        self.database = database.resolve()
        self.path = self.database.with_name(self.database.name + ".lock")  # the holder's pid
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (creating the database file, private, if it is new); ConfigError if it is held."""
        private_file(self.database)
        fd = os.open(self.database, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"another memosd (pid {self._holder()}) is already serving {self.database}; stop it first,"
                " or give this one another [storage] path"
            ) from None
        self._fd = fd
        pid_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(pid_fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(pid_fd)

    def _holder(self) -> str:
        """The pid holding the lock, for the error message."""
        listed = self._listed_holders()
        if listed:
            return listed[0]
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").strip() or "unknown"
        except OSError:
            return "unknown"

    def _listed_holders(self) -> list[str] | None:
        """Pids of the flocks on the file as Linux lists them in /proc/locks (by device and inode, so
        whatever name the holder used); None where there is no such list."""
        try:
            status = self.database.stat()
            listing = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
        except OSError:
            return None
        wanted = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
        return [
            fields[4]
            for fields in (line.split() for line in listing.splitlines())
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == wanted
        ]

    def held_by_other(self) -> bool:
        """True if a running daemon holds the lock (for commands that must not run beside one). Where
        /proc/locks lists locks this opens nothing; elsewhere it tries the lock on a descriptor of its own,
        so call it only while this process has no SQLite connection to the file (module docstring)."""
        if not self.database.exists():
            return False
        listed = self._listed_holders()
        if listed is not None:
            return any(pid != str(os.getpid()) for pid in listed)
        fd = os.open(self.database, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing releases a lock we may have just taken
        return False

    def release(self) -> None:
        """Drop the lock; only after the store is closed."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
