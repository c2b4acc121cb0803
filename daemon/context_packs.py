"""Context packs, our analogue of MemOS's activation memory: for an agent and a task, what it needs to start —
the task and its notes, the agent's own preferences, the task's history, its working memory and the memories
most relevant to the task that the agent may read — deduplicated, within a token budget counted with the
embedding model's tokenizer, as markdown for a model and as structured data.

Packs are built by the scheduler: at preload priority when a task is handed over or its agent connects, at
interactive priority when `context_get` finds none, at background priority when memories in scope change.
Every read goes through the receiving agent's own permissions, so a pack never holds what it may not read.

A stored pack is a cache of a permission decision, so it is never handed out as stored: every read checks
each item again against the reader's permissions as they are now (a grant taken back, a policy rule removed,
a group membership ended, a memory deleted) and renders the markdown without what it may no longer read.
A write rebuilds only the packs it can change: open tasks whose scope holds the written cube and whose
reader may read it; a change of grants or policies rebuilds the open packs whose scope holds that cube.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from functools import partial

import anyio
import msgspec
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon.embedder import Embedder
from daemon.errors import InvalidInput, NotFound, Overloaded, Unavailable
from daemon.events import Change, ChangeHub, CubesChanged, MemoryChanged, PackReady, TaskChanged
from daemon.filters import MemoryFilter
from daemon.identity import agent_named
from daemon.memories import Memories
from daemon.models import Agent, ContextPack, Memory, PackItem, SearchQuery, Task
from daemon.policy import AccessPolicy
from daemon.scheduler import Job, JobClass, Scheduler
from daemon.search import Search
from daemon.store import Store, placeholders
from daemon.supervision import retrying
from daemon.tasks import Tasks
from daemon.timeutil import now_iso
from daemon.working_memory import WorkingMemory

log = logging.getLogger(__name__)
_decode = msgspec.json.Decoder(ContextPack).decode
_scope = msgspec.json.Decoder(list[str]).decode
_ORDER = ("preference", "task history", "relevant", "working memory")


class ContextPacks:
    def __init__(
        self,
        store: Store,
        access: AccessPolicy,
        tasks: Tasks,
        search: Search,
        memories: Memories,
        embedder: Embedder,
        scheduler: Scheduler,
        hub: ChangeHub,
        working: WorkingMemory,
        budget_tokens: int,
    ) -> None:
        self._store, self._access, self._tasks, self._search = store, access, tasks, search
        self._memories, self._embedder, self._scheduler, self._hub = memories, embedder, scheduler, hub
        self._working = working
        self.budget_tokens = budget_tokens
        self._changes: MemoryObjectSendStream[Change] | None = None

    def request(self, task_id: str, agent: str, job_class: JobClass) -> Job:
        """Build (or rebuild) the pack; jobs for the same pack coalesce."""
        return self._scheduler.submit(
            ("pack", task_id, agent), job_class, lambda: self._build(task_id, agent)
        )

    async def get(self, agent: Agent, task_id: str) -> ContextPack:
        """The preloaded pack (or one built now at interactive priority), as the agent may read it now."""
        task = await self._tasks.get(agent, task_id)  # participants only
        async with self._store.read() as conn:
            row = await conn.row(
                "SELECT pack FROM context_packs WHERE task_id = ? AND agent = ?", (task.id, agent.name)
            )
        if row is not None:
            pack = _decode(row["pack"])
        else:
            pack = await self.request(task.id, agent.name, JobClass.INTERACTIVE).wait()
        return await self._as_readable(agent, task, pack)

    async def _as_readable(self, agent: Agent, task: Task, pack: ContextPack) -> ContextPack:
        """The pack without the items the agent may no longer read (or that are gone), re-rendered."""
        ids = [item.id for item in pack.items]
        allowed: set[str] = set()
        if ids:
            async with self._store.read() as conn:
                rows = await conn.rows(
                    f"SELECT id, cube_id FROM memories WHERE id IN ({placeholders(len(ids))})"
                    " AND deleted_at IS NULL",
                    ids,
                )
                levels = await self._access.levels(conn, agent, sorted({row["cube_id"] for row in rows}))
            allowed = {row["id"] for row in rows if row["cube_id"] in levels}
        items = [item for item in pack.items if item.id in allowed]
        if len(items) == len(pack.items) and task == pack.task:
            return pack
        if len(items) < len(pack.items):  # refill it with what the reader may read (a group change, say)
            with contextlib.suppress(Overloaded, Unavailable):  # this read is answered either way
                self.request(task.id, agent.name, JobClass.BACKGROUND)
        header = _header(task)
        tokens = self._embedder.count_tokens(header) + sum(
            self._embedder.count_tokens(item.content) + 8 for item in items
        )
        return msgspec.structs.replace(
            pack, task=task, notes=task.notes, items=items, tokens=tokens,
            markdown=_render(header, items, pack.left_out),
        )  # fmt: skip

    async def current(self, agent: Agent) -> ContextPack | None:
        """The pack of the agent's current task: the one it accepted last, else its newest open task."""
        open_tasks = await self._tasks.open_for(agent.name)
        if not open_tasks:
            return None
        current = self._working.current_task.get(agent.name)
        chosen = next((t for t in open_tasks if t.id == current), open_tasks[0])
        return await self.get(agent, chosen.id)

    async def _items(self, agent: Agent, task: Task) -> list[PackItem]:
        """Candidates, most important first: preferences, task history, relevant, working memory."""
        found: list[PackItem] = []

        def add(memory: Memory, reason: str, score: float | None = None) -> None:
            found.append(
                PackItem(
                    id=memory.id, cube=memory.cube, kind=memory.kind, content=memory.content,
                    source_agent=memory.source_agent, reason=reason, score=score,
                )
            )  # fmt: skip

        preferences = await self._memories.list(
            agent, where=MemoryFilter(kinds=["preference"], source_agent=agent.name), limit=20
        )
        for memory in preferences.memories:
            add(memory, "preference")
        history = await self._memories.list(agent, where=MemoryFilter(task_id=task.id), limit=20)
        for memory in history.memories:
            add(memory, "task history")
        async with self._store.read() as conn:
            readable = {ref.name for ref in await self._access.readable_cubes(conn, agent)}
        scope = [cube for cube in task.cubes if cube in readable] if task.cubes else None
        if scope is None or scope:
            query = " ".join([task.title, task.description, *(n.text for n in task.notes)])[:2000]
            try:
                hits = await self._search.search(agent, SearchQuery(query=query, cubes=scope, k=20))
            except InvalidInput:  # a task whose words are all punctuation has nothing to search for
                hits = None
            for hit in hits.results if hits else []:
                found.append(
                    PackItem(
                        id=hit.id, cube=hit.cube, kind=hit.kind, content=hit.content,
                        source_agent=hit.source_agent, reason="relevant", score=hit.score,
                    )
                )  # fmt: skip
        for item in self._working.recent(agent.name, task.id)[:10]:
            try:
                add(await self._memories.get(agent, item.memory_id), "working memory")
            except NotFound:
                continue
        return found

    async def _build(self, task_id: str, agent_name: str) -> ContextPack:
        agent = agent_named(agent_name)
        task = await self._tasks.get(agent, task_id)
        header = _header(task)
        used = self._embedder.count_tokens(header)
        items, seen, left_out = [], set(), 0
        for item in await self._items(agent, task):
            if item.id in seen:
                continue
            seen.add(item.id)
            cost = self._embedder.count_tokens(item.content) + 8  # the line's own markup
            if used + cost > self.budget_tokens:
                left_out += 1
                continue
            items.append(item)
            used += cost
        pack = ContextPack(
            task=task, agent=agent.name, built_at=now_iso(), budget_tokens=self.budget_tokens, tokens=used,
            items=items, notes=task.notes, left_out=left_out, markdown=_render(header, items, left_out),
        )  # fmt: skip
        async with self._store.write() as conn:
            await conn.execute(
                "INSERT OR REPLACE INTO context_packs (task_id, agent, built_at, pack) VALUES (?, ?, ?, ?)",
                (task.id, agent.name, pack.built_at, msgspec.json.encode(pack).decode()),
            )
            conn.after_commit(lambda: self._hub.publish(PackReady(task.id, agent.name)))
        return pack

    def _on_change(self, change: Change) -> None:
        if self._changes is not None and isinstance(change, (MemoryChanged, TaskChanged, CubesChanged)):
            try:
                self._changes.send_nowait(change)
            except anyio.WouldBlock:
                log.warning("context pack refresh queue full; packs refresh on the next change")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep packs in step: preload on handoff, rebuild (background) when memories in scope change."""
        send, receive = anyio.create_memory_object_stream[Change](1024)
        self._changes = send
        unsubscribe = self._hub.subscribe(self._on_change)
        try:
            with send, receive:
                task_status.started()
                await self._follow(receive)
        finally:
            unsubscribe()
            self._changes = None

    async def _follow(self, receive: MemoryObjectReceiveStream[Change]) -> None:
        async for first in receive:
            batch = [first]
            while True:
                try:
                    batch.append(receive.receive_nowait())
                except anyio.WouldBlock:
                    break
            await retrying("refreshing context packs", partial(self._refresh, batch))

    async def _refresh(self, batch: list[Change]) -> None:
        for (task_id, agent), job_class in (await self.affected(batch)).items():
            self.request(task_id, agent, job_class)

    async def affected(self, changes: Sequence[Change]) -> dict[tuple[str, str], JobClass]:
        """The packs (task id, reader) of open tasks that these changes can alter, each once, with the class
        to rebuild them at: a changed task at preload; at background, a pack whose scope holds a cube that
        was written and that its reader may read, or whose grants or policies changed. A task without
        cubes has every cube its reader may read in scope."""
        wanted: dict[tuple[str, str], JobClass] = {}
        changed_tasks = sorted({c.task_id for c in changes if isinstance(c, TaskChanged)})
        written = {c.cube for c in changes if isinstance(c, MemoryChanged)}
        regranted = {c.cube for c in changes if isinstance(c, CubesChanged)}  # None: any cube
        async with self._store.read() as conn:
            if changed_tasks:
                for row in await conn.rows(
                    f"SELECT id, to_agent FROM tasks WHERE id IN ({placeholders(len(changed_tasks))})"
                    " AND status IN ('pending', 'accepted')",
                    changed_tasks,
                ):
                    wanted[(row["id"], row["to_agent"])] = JobClass.PRELOAD
            if not written and not regranted:
                return wanted
            candidates = []
            for row in await conn.rows(
                "SELECT id, to_agent, cubes FROM tasks WHERE status IN ('pending', 'accepted')"
            ):
                task_id, reader = row["id"], row["to_agent"]
                if (task_id, reader) in wanted:
                    continue
                scope = set(_scope(row["cubes"]))
                if None in regranted or (regranted & scope if scope else regranted):
                    wanted[(task_id, reader)] = JobClass.BACKGROUND
                elif written & scope if scope else written:
                    candidates.append((task_id, reader, written & scope if scope else written))
            if candidates:
                may_read = await self._access.readers(conn, written, {c[1] for c in candidates})
                for task_id, reader, cubes in candidates:
                    if cubes & may_read.get(reader, set()):
                        wanted[(task_id, reader)] = JobClass.BACKGROUND
        return wanted

    async def preload_for(self, agent: str) -> None:
        """An agent connected: get the packs of its open tasks ready now."""
        for task in await self._tasks.open_for(agent):
            self.request(task.id, agent, JobClass.PRELOAD)


def _header(task: Task) -> str:
    lines = [
        f"# Task: {task.title}",
        f"From {task.from_agent} to {task.to_agent} · {task.status} · {task.priority}",
    ]
    if task.description:
        lines += ["", task.description]
    if task.notes:
        lines += ["", "## Notes"] + [f"- {n.agent} ({n.at[:16]}): {n.text}" for n in task.notes]
    return "\n".join(lines)


def _render(header: str, items: list[PackItem], left_out: int) -> str:
    titles = {
        "preference": "Your preferences", "task history": "Task history",
        "relevant": "Relevant memories", "working memory": "Your working memory",
    }  # fmt: skip
    parts = [header]
    for reason in _ORDER:
        chosen = [i for i in items if i.reason == reason]
        if chosen:
            parts += ["", f"## {titles[reason]}"] + [
                f"- {i.content} _({i.kind}, {i.cube}, by {i.source_agent}, {i.id})_" for i in chosen
            ]
    if left_out:
        parts += ["", f"_{left_out} more memories did not fit the budget; memory_search finds them._"]
    return "\n".join(parts)
