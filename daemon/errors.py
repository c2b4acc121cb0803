"""The one exception hierarchy of memos.

    MemosError                  anything memos raises on purpose; the message is for the user or model
    ├── ConfigError             the configuration file or an override is invalid (names file and key)
    ├── InvalidInput            a caller's argument is malformed, empty, too large or out of range
    ├── NotFound                no such cube/memory/agent *visible to the caller* (also used for denials
    │                           that must not reveal existence)
    ├── PermissionDenied        the caller is known to see the object but may not do this to it
    ├── Conflict                the object already exists or changed under the caller
    ├── Unauthenticated         a missing, unknown or disabled token
    ├── Overloaded            * a bounded queue is full; try again shortly
    ├── Unavailable           * a dependency (the embedding model, the daemon) cannot serve right now
    └── StoreError              the database failed
        ├── StoreClosed         an operation after the store was closed
        ├── StoreBusy         * another process holds the database's write lock
        ├── StorageFull       * the disk (or quota) holding the database is full
        └── StoreCorrupt        the database file or one of its indexes is damaged: run `memos check`

* retryable (`retryable = True`): the same call may succeed later unchanged. Background loops retry these
with back-off and stop the daemon on any other error (daemon/supervision.py).

Foreign errors are translated where they enter: sqlite errors, by result code, in daemon/store_errors.py;
msgspec in the config loader.
On the MCP surface each class reads as its kind first (`Invalid input: …`, `Not found: …`, `Busy: …`), mapped
in one place, mcp_server/errors.py, which every class finds through its bases.
"""

from __future__ import annotations

from typing import ClassVar


class MemosError(Exception):
    """Base of every error memos raises on purpose."""

    retryable: ClassVar[bool] = False


class ConfigError(MemosError):
    """The configuration file or an override is invalid; the message names the file and the key."""


class InvalidInput(MemosError):
    """A caller's argument is malformed, empty, too large or out of range."""


class NotFound(MemosError):
    """No such object visible to the caller. Denied reads use it too, so existence is never revealed."""


class PermissionDenied(MemosError):
    """The caller may see the object but may not perform this operation on it."""


class Conflict(MemosError):
    """The object already exists, or it changed under the caller."""


class Unauthenticated(MemosError):
    """A missing, unknown or disabled token."""


class Overloaded(MemosError):
    """A bounded queue is full; the caller should retry shortly."""

    retryable = True


class Unavailable(MemosError):
    """A dependency such as the embedding model cannot serve right now."""

    retryable = True


class StoreError(MemosError):
    """The database failed to do what was asked."""


class StoreClosed(StoreError):
    """The store was used after it was closed."""


class StoreBusy(StoreError):
    """Another process (an admin command, a backup) holds the database's write lock past the busy timeout."""

    retryable = True


class StorageFull(StoreError):
    """The disk or quota holding the database is full; nothing of the refused write was kept."""

    retryable = True


class StoreCorrupt(StoreError):
    """The database file, or an index in it, is damaged; `memos check` says which, `--repair` rebuilds."""


def shown(value: object, limit: int = 80) -> str:
    """A caller's value as an error message repeats it: its repr, cut to `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}…"
