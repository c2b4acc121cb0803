"""Figures for people looking at memos: how a cube grew, and the state of the database and its backups.

Counts come from the `(cube_id, created_at)` index alone (a covering scan, no table rows read), so the
dashboard's chart costs the same at 100k memories as a page of them.
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

    async def timeline(self, agent: Agent, cube: str) -> list[DayCount]:
        """Memories recorded per day in a cube the agent may read, oldest day first."""
        check_cube_ref(cube)
        async with self._store.read() as conn:
            ref = await self._access.require(conn, agent, cube, "read", "cube_timeline")
            rows = await conn.fetch_all(
                "SELECT substr(created_at, 1, 10) AS day, count(*) FROM memories INDEXED BY memories_by_cube"
                " WHERE cube_id = ? GROUP BY day ORDER BY day",
                (ref.id,),
            )
        return [DayCount(day=row[0], count=row[1]) for row in rows]


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
