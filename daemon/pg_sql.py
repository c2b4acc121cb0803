"""The store's SQL, written once for SQLite, read by PostgreSQL: the few rewrites that make it one dialect.

The core writes its statements in the SQLite dialect with `?` placeholders. PostgreSQL takes almost all of
them as they are; `postgres_sql()` rewrites the rest, each rule for one construct and nothing else:

* SQLite's planner hint `INDEXED BY name` is dropped (PostgreSQL's planner has no such hint);
* SQLite's `LIMIT -1` (no limit, before an OFFSET) becomes `LIMIT ALL`;
* `?` placeholders become psycopg's `%s` (and a literal `%` becomes `%%`), outside string literals;
* `INSERT OR IGNORE` becomes `INSERT … ON CONFLICT DO NOTHING`;
* `INSERT OR REPLACE` becomes an upsert on the table's primary key (`REPLACE_KEYS`);
* a plain `INSERT` into a table whose key the database assigns returns that key (`RETURNING`), which is
  what `Connection.execute` hands back, as SQLite's `lastrowid`.

The SQLite functions the core calls in SQL (`json_extract`, `json_each`) exist in PostgreSQL as functions of
the same name and meaning, created with the schema (daemon/pg_schema.py). Whatever else differs between the
two (full-text search, vectors, integrity, backups) lives in backend-specific modules, not here.
"""

from __future__ import annotations

import functools
import re

# Tables whose integer key the database assigns: a plain INSERT into them returns it.
ASSIGNED_KEYS = {
    "agents": "id",
    "cubes": "id",
    "memories": "seq",
    "groups": "id",
    "audit": "id",
    "task_notes": "id",
}

# The primary key of each table written with INSERT OR REPLACE: the conflict it replaces on.
REPLACE_KEYS = {
    "meta": ("key",),
    "context_packs": ("task_id", "agent"),
    "cube_grants": ("cube_id", "grantee", "permission"),
    "memory_vectors": ("rowid",),
}

_INDEXED_BY = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.IGNORECASE)
_NO_LIMIT = re.compile(r"\bLIMIT\s+-1\b", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\s+(?:OR\s+(IGNORE|REPLACE)\s+)?INTO\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE)


def _placeholders(sql: str) -> str:
    """`?` → `%s` and `%` → `%%`, leaving `?` inside string literals alone."""
    out: list[str] = []
    quoted = False
    for char in sql:
        if char == "'":
            quoted = not quoted
        if char == "%":
            out.append("%%")
        elif char == "?" and not quoted:
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


@functools.lru_cache(maxsize=2048)
def postgres_sql(sql: str, *, returning: bool = False) -> str:
    """The PostgreSQL form of one of the store's statements. `returning`: a single-row INSERT whose
    assigned key the caller wants back."""
    sql = _NO_LIMIT.sub("LIMIT ALL", _INDEXED_BY.sub("", sql))
    match = _INSERT.match(sql)
    if match is not None:
        how, table, columns = match.group(1), match.group(2).lower(), match.group(3)
        sql = sql[: match.start()] + f"INSERT INTO {table} ({columns})" + sql[match.end() :]
        sql = sql.rstrip().rstrip(";")
        if how is not None and how.upper() == "IGNORE":
            sql += " ON CONFLICT DO NOTHING"
        elif how is not None:
            keys = REPLACE_KEYS.get(table)
            if keys is None:
                raise ValueError(f"INSERT OR REPLACE INTO {table}: its key is not in pg_sql.REPLACE_KEYS")
            names = [name.strip() for name in columns.split(",")]
            updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in names if name not in keys)
            action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
            sql += f" ON CONFLICT ({', '.join(keys)}) {action}"
        elif returning and table in ASSIGNED_KEYS and "RETURNING" not in sql.upper():
            sql += f" RETURNING {ASSIGNED_KEYS[table]}"
    return _placeholders(sql)
