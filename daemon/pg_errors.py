"""PostgreSQL errors become memos errors here, by SQLSTATE class, and nowhere else.

Every call into psycopg (connecting, BEGIN, COMMIT, each statement) runs inside `translated()`. The
SQLSTATE's class (its first two characters) picks the memos error; a few codes within a class refine it.
An error without a SQLSTATE is the connection itself failing (the server down or unreachable). Messages
never decide anything: `tests/test_pg_store.py` checks that every SQLSTATE class PostgreSQL defines has an
entry here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from daemon.errors import Conflict, InvalidInput, MemosError, StorageFull, StoreBusy, StoreCorrupt, StoreError

_BUSY = "the database server is busy or restarting ({detail}); try again in a moment"
_GONE = (
    "the connection to the database server failed ({detail}); check that PostgreSQL is running and"
    " `[storage] url` names it"
)
_FULL = "the database server's disk is full ({detail}); nothing was written: free some space and try again"
_CORRUPT = "the database server reports damaged data ({detail}); see its log and restore from a backup"
_DENIED = "the database server refused memos's login or access ({detail}); check the user and password in `[storage] url`"
_BUG = "database error ({detail})"

# Every SQLSTATE class of PostgreSQL 18 (Appendix A of its manual).
CLASSES: dict[str, tuple[type[MemosError], str]] = {
    "00": (StoreError, _BUG),  # successful completion (never raised)
    "01": (StoreError, _BUG),  # warning
    "02": (StoreError, _BUG),  # no data
    "03": (StoreError, _BUG),  # SQL statement not yet complete
    "08": (StoreBusy, _GONE),  # connection exception: retrying may reach a restarted server
    "09": (StoreError, _BUG),  # triggered action exception
    "10": (StoreError, _BUG),  # XQuery error
    "0A": (StoreError, _BUG),  # feature not supported
    "0B": (StoreError, _BUG),  # invalid transaction initiation
    "0F": (StoreError, _BUG),  # locator exception
    "0L": (StoreError, _DENIED),  # invalid grantor
    "0P": (StoreError, _DENIED),  # invalid role specification
    "0Z": (StoreError, _BUG),  # diagnostics exception
    "20": (StoreError, _BUG),  # case not found
    "21": (StoreError, _BUG),  # cardinality violation
    "22": (InvalidInput, "a value does not fit the database ({detail})"),  # data exception
    "23": (Conflict, "the change conflicts with stored data ({detail})"),  # integrity constraint violation
    "24": (StoreError, _BUG),  # invalid cursor state
    "25": (StoreError, _BUG),  # invalid transaction state
    "26": (StoreError, _BUG),  # invalid SQL statement name
    "27": (StoreError, _BUG),  # triggered data change violation
    "28": (StoreError, _DENIED),  # invalid authorization specification
    "2B": (StoreError, _BUG),  # dependent privilege descriptors still exist
    "2D": (StoreError, _BUG),  # invalid transaction termination
    "2F": (StoreError, _BUG),  # SQL routine exception
    "34": (StoreError, _BUG),  # invalid cursor name
    "38": (StoreError, _BUG),  # external routine exception
    "39": (StoreError, _BUG),  # external routine invocation exception
    "3B": (StoreError, _BUG),  # savepoint exception
    "3D": (StoreError, "the database in `[storage] url` does not exist ({detail}); create it first"),
    "3F": (StoreError, _BUG),  # invalid schema name
    "40": (StoreBusy, _BUSY),  # transaction rollback: serialization failure, deadlock
    "42": (StoreError, _BUG),  # syntax error or access rule violation
    "44": (StoreError, _BUG),  # WITH CHECK OPTION violation
    "53": (StoreBusy, _BUSY),  # insufficient resources (53100 disk full: below)
    "54": (InvalidInput, "a value or statement is too large for the database ({detail})"),  # program limit
    "55": (StoreBusy, _BUSY),  # object not in prerequisite state (55P03: lock not available)
    "57": (StoreBusy, _BUSY),  # operator intervention: shutdown, cancel, cannot connect now
    "58": (StoreError, "the database server failed to read or write its files ({detail}); see its log"),
    "72": (StoreError, _BUG),  # snapshot failure
    "F0": (StoreError, _BUG),  # configuration file error
    "HV": (StoreError, _BUG),  # foreign data wrapper error
    "P0": (StoreError, _BUG),  # PL/pgSQL error
    "XX": (StoreError, _BUG),  # internal error (XX001, XX002: below)
}

CODES: dict[str, tuple[type[MemosError], str]] = {
    "53100": (StorageFull, _FULL),  # disk full
    "XX001": (StoreCorrupt, _CORRUPT),  # data corrupted
    "XX002": (StoreCorrupt, _CORRUPT),  # index corrupted
    "42501": (StoreError, _DENIED),  # insufficient privilege
}


def translate(exc: psycopg.Error) -> MemosError:
    """The memos error for a psycopg error."""
    code = exc.sqlstate
    detail = f"{code}: {exc}" if code else str(exc).strip() or type(exc).__name__
    if code is None:
        if isinstance(exc, psycopg.OperationalError):  # no server answered: it may come back
            return StoreBusy(_GONE.format(detail=detail))
        return StoreError(_BUG.format(detail=detail))  # raised by the driver itself: a bug of ours
    cls, template = CODES.get(code) or CLASSES.get(code[:2], (StoreError, _BUG))
    return cls(template.format(detail=detail))


@contextmanager
def translated() -> Iterator[None]:
    """Run a block of psycopg calls; a psycopg error leaves it as a memos error (the original as its cause)."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc) from exc
