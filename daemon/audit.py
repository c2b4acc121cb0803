"""The audit log: every write, share change and denial — who, what, which cube, when, and the outcome.

Writes and share changes are recorded inside their own transaction, so the log and the data never disagree.
Denials happen on reads; they are queued and written in batches by `Audit.run`, so a flood of refused calls
costs one commit per batch instead of one each, and never blocks the caller.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import anyio
import msgspec
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from daemon.reader_threads import on_reader_thread
from daemon.store import Connection, Store, placeholders
from daemon.supervision import retrying
from daemon.timeutil import now_iso

log = logging.getLogger(__name__)
_QUEUE_LIMIT = 1024


class AuditEntry(msgspec.Struct, kw_only=True):
    at: str
    agent: str
    action: str  # memory_add, memory_update, cube_share, ...
    cube: str | None
    target: str | None  # memory id(s) or grantee
    outcome: str  # "ok" or "denied"
    detail: str = ""


class Audit:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: MemoryObjectSendStream[AuditEntry] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop `run` serves the queue on
        self.dropped = 0

    @staticmethod
    async def record(
        conn: Connection, agent: str, action: str, cube: str | None, target: str | None, detail: str = ""
    ) -> None:
        """Log a successful change inside the caller's write transaction."""
        await conn.execute(
            "INSERT INTO audit (at, agent, action, cube, target, outcome, detail) VALUES (?, ?, ?, ?, ?, 'ok', ?)",
            (now_iso(), agent, action, cube, target, detail),
        )

    def denied(self, agent: str, action: str, cube: str | None, target: str | None, detail: str) -> None:
        """Log a refused call, soon; never waits for the write (a full queue drops and counts)."""
        entry = AuditEntry(
            at=now_iso(),
            agent=agent,
            action=action,
            cube=cube,
            target=target,
            outcome="denied",
            detail=detail,
        )
        if self._queue is None:
            return  # not serving (a CLI command): nobody is refused there
        if on_reader_thread():  # a search's reads (daemon/reader_threads.py): the queue is the loop's
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._queued, entry)
            return
        self._queued(entry)

    def _queued(self, entry: AuditEntry) -> None:
        if self._queue is None:
            return  # stopped meanwhile: the daemon is shutting down
        try:
            self._queue.send_nowait(entry)
        except anyio.WouldBlock:
            self.dropped += 1
            log.warning("audit queue full: %d denial records dropped so far", self.dropped)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        send, receive = anyio.create_memory_object_stream[AuditEntry](_QUEUE_LIMIT)
        self._queue, self._loop = send, asyncio.get_running_loop()
        try:
            with send, receive:
                task_status.started()
                async for first in receive:
                    batch = [first]
                    while len(batch) < 256:
                        try:
                            batch.append(receive.receive_nowait())
                        except anyio.WouldBlock:
                            break
                    await retrying(f"writing {len(batch)} audit records", partial(self._write, batch))
        finally:
            self._queue = None

    async def _write(self, batch: list[AuditEntry]) -> None:
        async with self._store.write() as conn:
            await conn.execute_many(
                "INSERT INTO audit (at, agent, action, cube, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.at, e.agent, e.action, e.cube, e.target, e.outcome, e.detail) for e in batch],
            )

    async def entries(
        self, *, cubes: list[str] | None = None, agent: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Newest first; `cubes` limits to those cubes, and to what happened to each since it was created, so
        an admin never sees what was tried on its cube's name before (None: all, for the machine's owner)."""
        clauses, params = [], []
        if cubes is not None:
            if not cubes:
                return []
            clauses.append(f"cube IN ({placeholders(len(cubes))})")
            clauses.append("at >= (SELECT c.created_at FROM cubes c WHERE c.name = audit.cube)")
            params += cubes
        if agent:
            clauses.append("agent = ?")
            params.append(agent)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        async with self._store.read() as conn:
            rows = await conn.rows(
                f"SELECT at, agent, action, cube, target, outcome, detail FROM audit {where}"
                " ORDER BY id DESC LIMIT ?",
                [*params, limit],
            )
        return [
            AuditEntry(
                at=r["at"],
                agent=r["agent"],
                action=r["action"],
                cube=r["cube"],
                target=r["target"],
                outcome=r["outcome"],
                detail=r["detail"],
            )
            for r in rows
        ]
