"""Tasks handed from one agent to another: pending → accepted → done or cancelled, with notes.

A task is visible to the two agents taking part and to nobody else (others get "no such task"). The handing
agent may only put cubes in scope that it can read itself; what ends up in the receiver's context pack is
further limited to what the receiver may read.
"""

from __future__ import annotations

import builtins
import secrets

import msgspec

from daemon.audit import Audit
from daemon.errors import Conflict, InvalidInput, NotFound, PermissionDenied, shown
from daemon.events import ChangeHub, TaskChanged
from daemon.idempotency import Recorder
from daemon.models import Agent, Task, TaskNote, TaskPage
from daemon.policy import AccessPolicy
from daemon.redaction import Redactor
from daemon.store import Connection, Store
from daemon.timeutil import now_iso
from daemon.validation import check_cube_ref, check_name
from daemon.working_memory import WorkingMemory

MAX_TITLE, MAX_DESCRIPTION, MAX_NOTE = 200, 8000, 4000
PRIORITIES = ("low", "normal", "high")
OPEN = ("pending", "accepted")
# Who may move a task to which status: the receiver works it, the sender may call it off.
TRANSITIONS = {
    ("pending", "accepted"): "to",
    ("pending", "cancelled"): "either",
    ("accepted", "done"): "to",
    ("accepted", "cancelled"): "either",
}
_cubes = msgspec.json.Decoder(list[str]).decode


def _text(value: str, field: str, limit: int, required: bool = False) -> str:
    if required and not value.strip():
        raise InvalidInput(f"{field} is empty")
    if len(value) > limit:
        raise InvalidInput(f"{field} is {len(value)} characters; the limit is {limit}")
    if "\x00" in value:
        raise InvalidInput(f"{field} contains a NUL character")
    return value


class Tasks:
    def __init__(
        self,
        store: Store,
        access: AccessPolicy,
        hub: ChangeHub,
        working: WorkingMemory,
        *,
        redactor: Redactor | None,
    ) -> None:
        self._redactor = redactor  # with [redaction] enabled: task texts go into context packs
        self._store = store
        self._access = access
        self._hub = hub
        self._working = working

    async def handoff(
        self,
        agent: Agent,
        to_agent: str,
        title: str,
        description: str = "",
        cubes: builtins.list[str] | None = None,
        notes: str | None = None,
        priority: str = "normal",
        *,
        recorder: Recorder | None = None,
    ) -> Task:
        check_name(to_agent, "to_agent")
        _text(title, "title", MAX_TITLE, required=True)
        _text(description, "description", MAX_DESCRIPTION)
        if notes:
            _text(notes, "notes", MAX_NOTE)
        if self._redactor is not None:
            title, description = self._redactor.text(title), self._redactor.text(description)
            notes = self._redactor.text(notes) if notes else notes
        if priority not in PRIORITIES:
            raise InvalidInput(f"priority {priority!r} is not one of: {', '.join(PRIORITIES)}")
        scope = list(dict.fromkeys(check_cube_ref(c) for c in cubes or []))
        task_id, now = "task_" + secrets.token_hex(8), now_iso()
        async with self._store.write() as conn:
            receiver = await conn.row("SELECT disabled_at FROM agents WHERE name = ?", (to_agent,))
            if receiver is None or not await self._access.related(conn, agent, to_agent):
                raise NotFound(
                    f"no agent {to_agent!r} you can hand the task to; you can name agents you share a group, a"
                    " policy rule, a cube or a task with (the machine's owner relates agents with `memos group"
                    " add-member`)"
                )
            if receiver["disabled_at"] is not None:
                raise InvalidInput(f"agent {to_agent!r} is disabled; hand the task to another agent")
            for cube in scope:  # you can only hand over what you can read
                await self._access.require(conn, agent, cube, "read", "task_handoff")
            await conn.execute(
                "INSERT INTO tasks (id, from_agent, to_agent, title, description, status, priority, cubes,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                (
                    task_id,
                    agent.name,
                    to_agent,
                    title,
                    description,
                    priority,
                    msgspec.json.encode(scope).decode(),
                    now,
                    now,
                ),
            )
            if notes:
                await conn.execute(
                    "INSERT INTO task_notes (task_id, agent, at, text) VALUES (?, ?, ?, ?)",
                    (task_id, agent.name, now, notes),
                )
            await Audit.record(conn, agent.name, "task_handoff", None, task_id, f"to {to_agent}")
            task = await self._read(conn, task_id)
            if recorder is not None:
                await recorder.record(conn, task)
            conn.after_commit(lambda: self._hub.publish(TaskChanged(task_id, (agent.name, to_agent))))
        return task

    @staticmethod
    async def _read(conn: Connection, task_id: str) -> Task:
        row = await conn.row(
            "SELECT id, from_agent, to_agent, title, description, status, priority, cubes, created_at, updated_at"
            " FROM tasks WHERE id = ?",
            (task_id,),
        )
        if row is None:
            raise NotFound(f"no task with id {task_id!r} for you; task_list shows yours")
        notes = await conn.rows(
            "SELECT agent, at, text FROM task_notes WHERE task_id = ? ORDER BY id", (task_id,)
        )
        return Task(
            id=row["id"], from_agent=row["from_agent"], to_agent=row["to_agent"], title=row["title"],
            description=row["description"], status=row["status"], priority=row["priority"],
            cubes=_cubes(row["cubes"]), created_at=row["created_at"], updated_at=row["updated_at"],
            notes=[TaskNote(agent=n["agent"], at=n["at"], text=n["text"]) for n in notes],
        )  # fmt: skip

    async def _visible(self, conn: Connection, agent: Agent, task_id: str) -> Task:
        if not isinstance(task_id, str) or not task_id.startswith("task_") or len(task_id) > 64:
            raise InvalidInput(
                f"task_id: {shown(task_id)} is not a task id (ids look like task_0123456789abcdef)"
            )
        task = await self._read(conn, task_id)
        if agent.name not in (task.from_agent, task.to_agent):
            raise NotFound(f"no task with id {task_id!r} for you; task_list shows yours")
        return task

    async def get(self, agent: Agent, task_id: str) -> Task:
        async with self._store.read() as conn:
            return await self._visible(conn, agent, task_id)

    async def list(self, agent: Agent, status: str | None = None, role: str | None = None) -> TaskPage:
        """Tasks the agent takes part in, newest first; `role` "to" (handed to it) or "from" (by it)."""
        if status is not None and status not in ("pending", "accepted", "done", "cancelled"):
            raise InvalidInput(f"status {status!r} is not one of: pending, accepted, done, cancelled")
        if role not in (None, "to", "from"):
            raise InvalidInput("role is 'to' (handed to you) or 'from' (handed by you)")
        who = {"to": "to_agent = ?", "from": "from_agent = ?"}.get(
            role or "", "(to_agent = ? OR from_agent = ?)"
        )
        params: builtins.list[object] = [agent.name] if role else [agent.name, agent.name]
        sql = f"SELECT id FROM tasks WHERE {who}"
        if status:
            sql += " AND status = ?"
            params.append(status)
        async with self._store.read() as conn:
            ids = [row["id"] for row in await conn.rows(sql + " ORDER BY created_at DESC LIMIT 200", params)]
            return TaskPage(tasks=[await self._read(conn, task_id) for task_id in ids])

    async def open_for(self, agent: str) -> builtins.list[Task]:
        """The agent's pending and accepted tasks (handed to it), newest first."""
        async with self._store.read() as conn:
            rows = await conn.rows(
                "SELECT id FROM tasks WHERE to_agent = ? AND status IN ('pending', 'accepted') ORDER BY created_at DESC",
                (agent,),
            )
            return [await self._read(conn, row["id"]) for row in rows]

    async def update(
        self,
        agent: Agent,
        task_id: str,
        status: str | None = None,
        notes: str | None = None,
        *,
        recorder: Recorder | None = None,
    ) -> Task:
        """Move the task on (accept, done, cancelled) and/or add a note."""
        if status is None and not notes:
            raise InvalidInput("nothing to update: give a status, notes, or both")
        if notes:
            _text(notes, "notes", MAX_NOTE)
            notes = self._redactor.text(notes) if self._redactor is not None else notes
        now = now_iso()
        async with self._store.write() as conn:
            task = await self._visible(conn, agent, task_id)
            if status is not None and status != task.status:
                who = TRANSITIONS.get((task.status, status))
                if who is None:
                    raise Conflict(f"task {task_id} is {task.status}; it cannot become {status}")
                if who == "to" and agent.name != task.to_agent:
                    raise PermissionDenied(
                        f"only {task.to_agent}, who was handed the task, can mark it {status}"
                    )
                await conn.execute(
                    "UPDATE tasks SET status = ?, updated_at = ? WHERE id = ?", (status, now, task_id)
                )
            if notes:
                await conn.execute(
                    "INSERT INTO task_notes (task_id, agent, at, text) VALUES (?, ?, ?, ?)",
                    (task_id, agent.name, now, notes),
                )
                await conn.execute("UPDATE tasks SET updated_at = ? WHERE id = ?", (now, task_id))
            await Audit.record(conn, agent.name, "task_update", None, task_id, status or "note")
            updated = await self._read(conn, task_id)
            if recorder is not None:
                await recorder.record(conn, updated)
            conn.after_commit(
                lambda: self._hub.publish(TaskChanged(task_id, (task.from_agent, task.to_agent)))
            )
        if status == "accepted":
            self._working.current_task[agent.name] = task_id
        elif status in ("done", "cancelled") and self._working.current_task.get(task.to_agent) == task_id:
            del self._working.current_task[task.to_agent]
        return updated

    async def accept(self, agent: Agent, task_id: str, *, recorder: Recorder | None = None) -> Task:
        return await self.update(agent, task_id, "accepted", recorder=recorder)
