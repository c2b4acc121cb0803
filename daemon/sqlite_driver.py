"""Pick a sqlite3 module that can load extensions, so sqlite-vec loads on every interpreter.

Some interpreters (pyenv builds, python.org macOS builds) compile `sqlite3` without extension loading:
`Connection.enable_load_extension` is missing or refuses. For them we use `sqlean` (sqlean.py), a drop-in
sqlite3 module built with extension loading and FTS5. The choice is made once, by trying, not by guessing.
"""

from __future__ import annotations

import functools
import sqlite3
from types import ModuleType
from typing import Any

import sqlite_vec

from daemon.errors import StoreError


def _works(module: Any) -> bool:
    """True when `module` can load sqlite-vec and has FTS5."""
    if not hasattr(module.Connection, "enable_load_extension"):
        return False
    try:
        conn = module.connect(":memory:")
    except module.Error:
        return False
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
        conn.execute("CREATE VIRTUAL TABLE probe USING fts5(x)")
        return True
    except (module.Error, AttributeError):
        return False
    finally:
        conn.close()


@functools.cache
def sqlite_module() -> ModuleType:
    """The sqlite3-compatible module the store uses: the standard one where it can, else sqlean."""
    if _works(sqlite3):
        return sqlite3
    try:
        import sqlean
    except ImportError as exc:  # pragma: no cover - sqlean.py is a declared dependency
        raise StoreError(
            "this Python's sqlite3 cannot load extensions and sqlean.py is not installed: pip install sqlean.py"
        ) from exc
    if _works(sqlean):
        return sqlean
    raise StoreError("no sqlite3 build on this Python can load sqlite-vec with FTS5")  # pragma: no cover


def connect(path: str, *, read_only: bool = False) -> Any:
    """Open a configured connection: extensions loaded, WAL, durable commits, explicit transactions."""
    module = sqlite_module()
    conn = module.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    if read_only:
        conn.execute("PRAGMA query_only = 1")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk before it is acknowledged, also across power loss.
        conn.execute("PRAGMA synchronous = FULL")
    return conn
