"""The one exception hierarchy of memos.

    MemosError                  anything memos raises on purpose; the message is for the user or model
    ├── ConfigError             the configuration file or an override is invalid (names file and key)
    ├── InvalidInput            a caller's argument is malformed, empty, too large or out of range
    ├── NotFound                no such cube/memory/agent *visible to the caller* (also used for denials
    │                           that must not reveal existence)
    ├── PermissionDenied        the caller is known to see the object but may not do this to it
    ├── Conflict                the object already exists or changed under the caller
    ├── Unauthenticated         a missing, unknown or disabled token
    ├── Overloaded              a bounded queue is full; try again shortly
    ├── Unavailable             a dependency (the embedding model, the daemon) cannot serve right now
    └── StoreError              the database failed
        ├── StoreClosed         an operation after the store was closed
        └── StoreCorrupt        the database file failed its integrity check

Foreign errors (sqlite3, aiosqlite, msgspec) are translated where they enter: the store and the config loader.
On the MCP surface each class reads as its kind first (`Invalid input: …`, `Not found: …`, `Busy: …`), mapped
in one place, mcp_server/errors.py, which every class finds through its bases.
"""

from __future__ import annotations


class MemosError(Exception):
    """Base of every error memos raises on purpose."""


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


class Unavailable(MemosError):
    """A dependency such as the embedding model cannot serve right now."""


class StoreError(MemosError):
    """The database failed to do what was asked."""


class StoreClosed(StoreError):
    """The store was used after it was closed."""


class StoreCorrupt(StoreError):
    """The database file failed its integrity check."""


def shown(value: object, limit: int = 80) -> str:
    """A caller's value as an error message repeats it: its repr, cut to `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}…"
