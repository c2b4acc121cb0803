"""Figures for people looking at memos: how a cube grew, and the state of the database and its backups.

The first count of a cube reads the `(cube_id, created_at)` index alone (a covering scan, no table rows);
later ones add only the memories recorded since, so the dashboard's chart costs about as much as a page.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from daemon.models import Agent
from daemon.policy import AccessPolicy
from daemon.store import Store
from daemon.validation import check_cube_ref


class DayCount(msgspec.Struct, kw_only=True, frozen=True):
    day: str  # YYYY-MM-DD (UTC)
    count: int  # memories recorded that day, deleted ones included


class StorageFacts(msgspec.Struct, kw_only=True):
    database_bytes: int  # the database file and its write-ahead log
    backups: int
    last_backup: str | None  # file name of the newest backup
    last_backup_bytes: int | None


class Activity:
    def __init__(self, store: Store, access: AccessPolicy) -> None:
        self._store = store
        self._access = access
        # cube id -> (highest seq counted, day -> memories): rows are never removed and a new row always
        # gets a higher seq, so later calls count only the rows above it.
        self._days: dict[int, tuple[int, dict[str, int]]] = {}

    async def timeline(self, agent: Agent, cube: str) -> list[DayCount]:
        """Memories recorded per day in a cube the agent may read, oldest day first."""
        check_cube_ref(cube)
        async with self._store.read() as conn:
            ref = await self._access.require(conn, agent, cube, "read", "cube_timeline")
            upto, known = self._days.get(ref.id, (0, {}))
            index = "memories_by_cube_seq" if upto else "memories_by_cube"  # the first count: covering
            rows = await conn.rows(
                f"SELECT substr(created_at, 1, 10) AS day, count(*) AS n, max(seq) AS highest"
                f" FROM memories INDEXED BY {index}"
                " WHERE cube_id = ? AND seq > ? GROUP BY day",
                (ref.id, upto),
            )
        days, top = dict(known), upto
        for row in rows:
            days[row["day"]] = days.get(row["day"], 0) + row["n"]
            top = max(top, row["highest"])
        if top >= self._days.get(ref.id, (0, {}))[0]:
            self._days[ref.id] = (top, days)
        return [DayCount(day=day, count=count) for day, count in sorted(days.items())]


def storage_facts(database: Path, backup_dir: Path) -> StorageFacts:
    """Sizes from the file system: no query, so it answers while the store is busy."""
    size = sum(p.stat().st_size for p in (database, Path(f"{database}-wal")) if p.exists())
    backups = sorted(backup_dir.glob("memos-*.db")) if backup_dir.is_dir() else []  # names sort by time
    newest = backups[-1] if backups else None
    return StorageFacts(
        database_bytes=size,
        backups=len(backups),
        last_backup=newest.name if newest else None,
        last_backup_bytes=newest.stat().st_size if newest else None,
    )
