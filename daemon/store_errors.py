"""sqlite errors become memos errors here, by result code, and nowhere else.

Every call into SQLite (BEGIN, COMMIT, ROLLBACK, each statement, opening, checking) runs inside
`translated()`. The primary result code (`sqlite_errorcode & 0xFF`, carried by the exceptions of both sqlite3
and sqlean) picks the class; the message says what happened and what to do. Messages never decide anything:
`tests/test_store_faults.py` checks that every result code has an entry.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daemon import sqlite_driver
from daemon.errors import Conflict, InvalidInput, MemosError, StorageFull, StoreBusy, StoreCorrupt, StoreError

CHECK_ADVICE = "stop memosd and run `memos check` (`memos check --repair` rebuilds damaged indexes)"

_BUSY = "the database is locked by another process ({detail}); try again in a moment"
_FULL = "the disk holding the database is full ({detail}); nothing was written: free some space and try again"
_CORRUPT = "the database is damaged ({detail}); " + CHECK_ADVICE
_NOT_A_DATABASE = (
    "the file is not a database, or its header is damaged ({detail}); stop memosd, move the file aside and"
    " restore a backup (`memos restore`)"
)
_IOERR = "the disk failed to read or write the database ({detail}); check the disk, then run `memos check`"
_DENIED = "the database file cannot be opened or written ({detail}); check its owner and permissions"
_BUG = "database error ({detail})"

# Every primary result code an error can carry (1-28), so a new code cannot slip through untranslated.
PRIMARY: dict[int, tuple[type[MemosError], str]] = {
    1: (StoreError, _BUG),  # SQLITE_ERROR: a bad statement or a missing table
    2: (StoreError, _BUG),  # SQLITE_INTERNAL
    3: (StoreError, _DENIED),  # SQLITE_PERM
    4: (StoreError, _BUG),  # SQLITE_ABORT: a callback asked to stop
    5: (StoreBusy, _BUSY),  # SQLITE_BUSY
    6: (StoreBusy, _BUSY),  # SQLITE_LOCKED: a conflict within this process's connections
    7: (StoreError, "memosd ran out of memory in the database ({detail})"),  # SQLITE_NOMEM
    8: (StoreError, _DENIED),  # SQLITE_READONLY
    9: (StoreError, "a database operation was interrupted ({detail})"),  # SQLITE_INTERRUPT
    10: (StoreError, _IOERR),  # SQLITE_IOERR
    11: (StoreCorrupt, _CORRUPT),  # SQLITE_CORRUPT, also _CORRUPT_VTAB: a damaged FTS index
    12: (StoreError, _BUG),  # SQLITE_NOTFOUND
    13: (StorageFull, _FULL),  # SQLITE_FULL
    14: (StoreError, _DENIED),  # SQLITE_CANTOPEN
    15: (StoreBusy, _BUSY),  # SQLITE_PROTOCOL: a race on the WAL lock; retrying works
    16: (StoreError, _BUG),  # SQLITE_EMPTY
    17: (StoreError, _BUG),  # SQLITE_SCHEMA
    18: (InvalidInput, "a value is too large for the database ({detail})"),  # SQLITE_TOOBIG
    19: (Conflict, "the change conflicts with stored data ({detail})"),  # SQLITE_CONSTRAINT
    20: (StoreError, _BUG),  # SQLITE_MISMATCH
    21: (StoreError, _BUG),  # SQLITE_MISUSE
    22: (StoreError, _DENIED),  # SQLITE_NOLFS: the file system cannot hold a file this large
    23: (StoreError, _DENIED),  # SQLITE_AUTH
    24: (StoreError, _BUG),  # SQLITE_FORMAT
    25: (StoreError, _BUG),  # SQLITE_RANGE
    26: (StoreCorrupt, _NOT_A_DATABASE),  # SQLITE_NOTADB
    27: (StoreError, _BUG),  # SQLITE_NOTICE
    28: (StoreError, _BUG),  # SQLITE_WARNING
}


def sqlite_errors() -> tuple[type[Exception], ...]:
    """The exception base classes of the sqlite module in use (and the standard one, which tools may use)."""
    return tuple({sqlite_driver.sqlite_module().Error, sqlite3.Error})


def translate(exc: Exception, path: Path | None = None) -> MemosError:
    """The memos error for a sqlite error; `path` names the file when the error is about the file itself."""
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None)
    detail = f"{name}: {exc}" if name else str(exc)
    if path is not None:
        detail = f"{path}: {detail}"
    if code is None:  # raised by the driver itself (a closed connection, a bad binding): a bug of ours
        return StoreError(_BUG.format(detail=detail))
    cls, template = PRIMARY.get(code & 0xFF, (StoreError, _BUG))
    return cls(template.format(detail=detail))


@contextmanager
def translated(path: Path | None = None) -> Iterator[None]:
    """Run a block of sqlite calls; a sqlite error leaves it as a memos error (the original as its cause)."""
    try:
        yield
    except sqlite_errors() as exc:
        raise translate(exc, path) from exc
