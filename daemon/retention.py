"""Retention: per-cube rules that archive what falls out — too old, past a kind's time-to-live, or beyond the
newest N. Archiving is a soft delete with a reason (restorable until compaction; never a silent hard delete),
and a memory restored after archiving is kept from then on. `plan` is exactly what `apply` archives.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import anyio
import msgspec
from anyio.abc import TaskStatus

from daemon.audit import Audit
from daemon.idempotency import forget_old_keys
from daemon.policy import CubeRef
from daemon.rows import Row
from daemon.scheduler import JobClass, Scheduler
from daemon.settings_store import CubeSettingsStore
from daemon.store import Connection, Store, placeholders
from daemon.supervision import retrying
from daemon.timeutil import format_time, now_iso

log = logging.getLogger(__name__)
RUN_EVERY_S = 600.0
_BY = "memos retention"


class Planned(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    created_at: str
    reason: str
    content: str  # the first 80 characters, for people reading the dry run


def _before(days: float) -> str:
    return format_time(datetime.now(timezone.utc) - timedelta(days=days))


class Retention:
    def __init__(self, store: Store, settings: CubeSettingsStore) -> None:
        self.scheduler: Scheduler | None = None  # set by the daemon: the job then runs at background priority
        self._store = store
        self._settings = settings

    async def _plan_on(self, conn: Connection, ref: CubeRef) -> list[Planned]:
        rules = await self._settings.effective(ref, conn)
        live = "cube_id = ? AND deleted_at IS NULL AND kept_at IS NULL"
        chosen: dict[str, Planned] = {}

        def take(rows: list[Row], reason: str) -> None:
            for row in rows:
                chosen.setdefault(
                    row["id"],
                    Planned(
                        id=row["id"], kind=row["kind"], created_at=row["created_at"], reason=reason,
                        content=row["content"][:80],
                    ),
                )  # fmt: skip

        columns = "SELECT id, kind, created_at, content FROM memories WHERE"
        if rules.max_age_days:
            take(
                await conn.rows(
                    f"{columns} {live} AND created_at < ? ORDER BY seq", (ref.id, _before(rules.max_age_days))
                ),
                f"older than max_age_days {rules.max_age_days:g}",
            )
        for kind, days in sorted((rules.ttl_days or {}).items()):
            take(
                await conn.rows(
                    f"{columns} {live} AND kind = ? AND created_at < ? ORDER BY seq",
                    (ref.id, kind, _before(days)),
                ),
                f"{kind} older than its ttl_days {days:g}",
            )
        if rules.max_count:
            rows = await conn.rows(
                f"{columns} {live} ORDER BY created_at DESC, seq DESC LIMIT -1 OFFSET ?",
                (ref.id, rules.max_count),
            )
            take(list(reversed(rows)), f"beyond the newest max_count {rules.max_count}")
        return sorted(chosen.values(), key=lambda p: (p.created_at, p.id))

    async def plan(self, cube: str) -> list[Planned]:
        """What `apply` would archive now, without changing anything (the dry run)."""
        async with self._store.read() as conn:
            return await self._plan_on(conn, await _ref(conn, cube))

    async def apply(self, cube: str) -> list[Planned]:
        """Archive what the rules say, in one transaction; returns what was archived."""
        async with self._store.write() as conn:
            ref = await _ref(conn, cube)
            planned = await self._plan_on(conn, ref)
            if planned:
                now = now_iso()
                ids = [p.id for p in planned]
                await conn.execute_many(
                    "UPDATE memories SET deleted_at = ?, deleted_reason = ? WHERE id = ?",
                    [(now, f"retention: {p.reason}", p.id) for p in planned],
                )
                await Audit.record(conn, _BY, "retention_archive", ref.name, ids[0], f"{len(ids)} memories")
        return planned

    async def apply_all(self) -> int:
        async with self._store.read() as conn:
            names = [row["name"] for row in await conn.rows("SELECT name FROM cubes ORDER BY name")]
        archived = 0
        for name in names:
            archived += len(await self.apply(name))
        return archived

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Apply every cube's rules now and every ten minutes; also forget week-old idempotency keys."""
        started = False
        while True:
            archived = await retrying("applying the retention rules", self._round)
            if not started:  # the first pass is done before the daemon serves
                task_status.started()
                started = True
            if archived:
                log.info("retention archived %d memories", archived)
            await anyio.sleep(RUN_EVERY_S)

    async def _round(self) -> int:
        if not await self._store.claim_turn(
            "retention", RUN_EVERY_S
        ):  # another daemon on the database ran it
            return 0
        if self.scheduler is None:
            archived = await self.apply_all()
        else:
            archived = await self.scheduler.submit(("retention",), JobClass.BACKGROUND, self.apply_all).wait()
        await forget_old_keys(self._store)
        return int(archived)


async def _ref(conn: Connection, cube: str) -> CubeRef:
    from daemon.errors import NotFound

    row = await conn.row(f"SELECT id, name FROM cubes WHERE name IN ({placeholders(1)})", (cube,))
    if row is None:
        raise NotFound(f"no cube named {cube!r}")
    return CubeRef(id=row["id"], name=row["name"])
