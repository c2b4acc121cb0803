"""`memos check`: the full integrity check of the database and its indexes, and the repair of the indexes.

The start-up `quick_check` sees a damaged page, not an index that disagrees with its table (a memory then
looks missing). The check here reads everything: `PRAGMA integrity_check` (every page, and every index
against its table), FTS5's own `integrity-check` (the full-text index against the memories), and the
vectors against the memories. A repair rebuilds what is derived from the memories table: every B-tree
index (`REINDEX`), the full-text index (`rebuild`), and the vectors (stray ones dropped; memories without
one marked for memosd's backfill to embed again). Damage in the tables themselves cannot be rebuilt: the
check says to restore a backup.

Checking runs beside the daemon (the full-text check holds the write lock while it reads the index, so the
daemon's writes wait for it). A repair refuses while memosd serves the file, because memosd keeps vectors
in memory that must not disagree with the table, and holds the instance lock while it works, so memosd
cannot start meanwhile. Both are blocking: run them on a worker thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from daemon import sqlite_driver
from daemon.errors import ConfigError, InvalidInput, StoreCorrupt
from daemon.instance_lock import InstanceLock
from daemon.rows import read_rows
from daemon.store_errors import sqlite_errors, translated


class CheckReport(msgspec.Struct, kw_only=True):
    database: str
    problems: list[str]  # empty: the database and its indexes are whole
    repaired: list[str] = msgspec.field(default_factory=list)  # what a repair did


def check_database(path: Path) -> CheckReport:
    """Every problem the full check finds; blocking."""
    if not path.is_file():
        raise InvalidInput(f"no database at {path}")
    with translated(path):
        conn = sqlite_driver.connect(str(path))
    try:
        return CheckReport(database=str(path), problems=_problems(conn, path))
    finally:
        conn.close()


def repair_database(path: Path) -> CheckReport:
    """Rebuild the indexes derived from the memories table (memosd stopped), then check again; blocking."""
    if not path.is_file():
        raise InvalidInput(f"no database at {path}")
    lock = InstanceLock(path)
    if lock.held_by_other():
        raise ConfigError(
            f"memosd is serving {path}; stop it before `memos check --repair` (systemctl --user stop memosd):"
            " it keeps vectors in memory that a repair would change under it"
        )
    lock.acquire()
    try:
        with translated(path):
            conn = sqlite_driver.connect(str(path))
        try:
            repaired = _repair(conn, path)
            return CheckReport(database=str(path), problems=_problems(conn, path), repaired=repaired)
        finally:
            conn.close()
    finally:
        lock.release()


def _problems(conn: Any, path: Path) -> list[str]:
    with translated(path):
        checked = [row["integrity_check"] for row in read_rows(conn, "PRAGMA integrity_check")]
        problems = [f"integrity: {problem}" for problem in checked if problem != "ok"]
    problems += _fts_problems(conn, path)
    problems += [f"vectors: {line}" for line in _vector_problems(conn, path)[0]]
    return problems


def _fts_problems(conn: Any, path: Path) -> list[str]:
    """FTS5's own check; rank 1 compares the index with the memories table it is built from."""
    try:
        with translated(path):
            conn.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('integrity-check', 1)")
    except StoreCorrupt as exc:
        cause = exc.__cause__
        return [f"full-text index: it does not match the memories table ({cause or exc})"]
    return []


def _vector_problems(conn: Any, path: Path) -> tuple[list[str], set[int], set[int]]:
    """What is wrong with the vectors, the vector rowids to drop and the memories to embed again."""
    with translated(path):
        has_table = read_rows(
            conn, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'memory_vectors'"
        )
        if not has_table:  # memosd has never had a model: nothing to be consistent with
            return [], set(), set()
        memories = {row["seq"]: row for row in read_rows(conn, "SELECT seq, cube_id, embedded FROM memories")}
        vectors = {
            int(row["rowid"]): int(row["cube_id"])
            for row in read_rows(conn, "SELECT rowid, cube_id FROM memory_vectors")
        }
    stray = {seq for seq in vectors if seq not in memories}
    misfiled = {
        seq for seq, cube_id in vectors.items() if seq in memories and memories[seq]["cube_id"] != cube_id
    }
    missing = {seq for seq, row in memories.items() if row["embedded"] and seq not in vectors}
    lines = []
    if stray:
        lines.append(f"{len(stray)} vectors belong to no memory")
    if misfiled:
        lines.append(f"{len(misfiled)} vectors are filed under another cube than their memory")
    if missing:
        lines.append(f"{len(missing)} memories marked embedded have no vector")
    return lines, stray | misfiled, missing | misfiled


def _repair(conn: Any, path: Path) -> list[str]:
    done = []
    with translated(path):
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("REINDEX")
            done.append("rebuilt every table index (REINDEX)")
            conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('rebuild')")
            done.append("rebuilt the full-text index from the memories table")
            _, drop, embed = _vector_problems(conn, path)
            if drop:
                conn.executemany(
                    "DELETE FROM memory_vectors WHERE rowid = ?", [(seq,) for seq in sorted(drop)]
                )
                done.append(f"dropped {len(drop)} stray vectors")
            if embed:
                conn.executemany(
                    "UPDATE memories SET embedded = 0 WHERE seq = ?", [(seq,) for seq in sorted(embed)]
                )
                done.append(f"marked {len(embed)} memories for memosd to embed again when it starts")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite_errors():  # the repair's own error is the one to report
                    pass
            raise
    return done
