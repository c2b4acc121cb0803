"""Adding memories: single and atomic batch, exact-duplicate suppression, similar memories reported, and
supersession (a new memory closes the validity of the ones it replaces).

Text is embedded before the write lock is taken, so the model never holds up other writers. Similar
memories are looked up before the write too; everything else — the permission checks, the duplicate check,
closing superseded memories, the vectors, the audit entry and the idempotency record — happens in one
transaction.
"""

from __future__ import annotations

import msgspec
import numpy as np

from daemon.audit import Audit
from daemon.config import LimitsConfig
from daemon.content_hash import content_hash
from daemon.cube_settings import CubeSettings
from daemon.entities import index as index_entities
from daemon.errors import Conflict, InvalidInput
from daemon.events import ChangeHub, MemoryChanged
from daemon.idempotency import Recorder
from daemon.memories import (
    MEMORY_COLUMNS,
    MEMORY_FROM,
    Memories,
    check_memory_id,
    memory_from_row,
    new_memory_id,
)
from daemon.models import AddedMemory, Agent, BatchAdded, NewMemory, Similar
from daemon.policy import AccessPolicy, CubeRef
from daemon.redaction import Redactor
from daemon.settings_store import CubeSettingsStore
from daemon.store import Connection, Store, placeholders
from daemon.timeutil import now_iso
from daemon.validation import check_cube_ref, check_new_memory
from daemon.vectors import VectorIndex
from daemon.working_memory import WorkingMemory

_encode = msgspec.json.Encoder().encode
_SIMILAR_CANDIDATES = 8


class Additions:
    def __init__(
        self,
        store: Store,
        access: AccessPolicy,
        vectors: VectorIndex,
        memories: Memories,
        settings: CubeSettingsStore,
        limits: LimitsConfig,
        hub: ChangeHub | None = None,
        working: WorkingMemory | None = None,
        *,
        redactor: Redactor,
    ) -> None:
        self._hub = hub or ChangeHub()
        self._working = working or WorkingMemory()
        self._store = store
        self._access = access
        self._vectors = vectors
        self._memories = memories
        self._settings = settings
        self._limits = limits
        self._redactor = redactor  # for cubes whose redact_secrets setting is on

    async def add(
        self,
        agent: Agent,
        cube: str | None,
        item: NewMemory,
        *,
        supersedes: list[str] | None = None,
        recorder: Recorder | None = None,
    ) -> AddedMemory:
        """Add one memory; report similar ones; close the validity of those it `supersedes`."""
        checked = check_new_memory(item, self._limits)
        old_ids = [check_memory_id(i, "supersedes") for i in dict.fromkeys(supersedes or [])]
        name, ref, settings = await self._prepare(agent, cube)
        if settings.redact_secrets:  # before anything is embedded, indexed or stored
            checked = self._redactor.new_memory(checked)
        vectors = await self._vectors.embed([checked.content])
        similar = await self._similar(ref, vectors, settings) if vectors is not None else []
        async with self._store.write() as conn:
            ref = await self._access.require(conn, agent, name, "write", "memory_add")
            (seq, duplicate), *_ = await self._insert(conn, agent, ref, [checked], vectors, settings)
            superseded = await self._close(conn, agent, old_ids, seq) if old_ids else []
            memory = await self._read(conn, seq)
            result = AddedMemory(
                **msgspec.structs.asdict(memory),
                duplicate=duplicate,
                similar=[s for s in similar if s.id != memory.id],
                superseded=superseded,
            )
            if recorder is not None:
                await recorder.record(conn, result)
            self._announce(conn, agent, result.cube, [result.id, *superseded], checked.task_id)
        if vectors is None:
            self._vectors.wake()
        return result

    def _announce(
        self, conn: Connection, agent: Agent, cube: str, ids: list[str], task_id: str | None
    ) -> None:
        """Once committed: tell listeners, and put the memories in the agent's working memory."""

        def after() -> None:
            self._working.record(agent.name, ids[:1] if len(ids) > 20 else ids, "wrote", task_id)
            self._hub.publish(MemoryChanged(cube, ids[0]))

        conn.after_commit(after)

    async def add_batch(
        self, agent: Agent, cube: str | None, items: list[NewMemory], *, recorder: Recorder | None = None
    ) -> BatchAdded:
        """Add every item or none; errors name the item's index. Exact duplicates are not stored twice."""
        if not items:
            raise InvalidInput("items is empty: give at least one memory")
        if len(items) > self._limits.max_batch:
            raise InvalidInput(
                f"items has {len(items)} memories; the limit is {self._limits.max_batch} per batch"
            )
        checked = [check_new_memory(item, self._limits, f"items[{i}].") for i, item in enumerate(items)]
        name, _, settings = await self._prepare(agent, cube)
        if settings.redact_secrets:
            checked = [self._redactor.new_memory(item) for item in checked]
        vectors = await self._vectors.embed([item.content for item in checked])
        async with self._store.write() as conn:
            ref = await self._access.require(conn, agent, name, "write", "memory_add")
            inserted = await self._insert(conn, agent, ref, checked, vectors, settings)
            rows = await conn.rows(
                f"SELECT seq, id FROM memories WHERE seq IN ({placeholders(len(inserted))})",
                [s for s, _ in inserted],
            )
            ids: dict[int, str] = {row["seq"]: row["id"] for row in rows}
            result = BatchAdded(
                ids=[ids[seq] for seq, _ in inserted],
                cube=ref.name,
                count=len(inserted),
                duplicates=list(dict.fromkeys(ids[seq] for seq, dup in inserted if dup)),
            )
            if recorder is not None:
                await recorder.record(conn, result)
            self._announce(conn, agent, result.cube, result.ids, checked[0].task_id)
        if vectors is None:
            self._vectors.wake()
        return result

    async def _prepare(self, agent: Agent, cube: str | None) -> tuple[str, CubeRef, CubeSettings]:
        """Check the cube is writable before spending time on embeddings; its settings."""
        name = check_cube_ref(cube) if cube else agent.home_cube
        async with self._store.read() as conn:
            ref = await self._access.require(conn, agent, name, "write", "memory_add")
        return name, ref, await self._settings.effective(ref)

    async def _similar(self, ref: CubeRef, vectors: np.ndarray, settings: CubeSettings) -> list[Similar]:
        threshold = settings.similar_threshold
        if not settings.report_similar or threshold is None:
            return []
        async with self._store.read() as conn:
            near = [
                (s, score)
                for s, score in await self._vectors.nearest(conn, vectors[0], [ref.id], _SIMILAR_CANDIDATES)
                if score >= threshold
            ]
            if not near:
                return []
            rows = await conn.rows(
                f"SELECT seq, id, content FROM memories WHERE seq IN ({placeholders(len(near))})"
                " AND deleted_at IS NULL AND superseded_by IS NULL",
                [s for s, _ in near],
            )
        found = {row["seq"]: row for row in rows}
        return [
            Similar(id=found[s]["id"], cube=ref.name, content=found[s]["content"], score=round(score, 4))
            for s, score in near
            if s in found
        ]

    async def _insert(
        self,
        conn: Connection,
        agent: Agent,
        ref: CubeRef,
        items: list[NewMemory],
        vectors: np.ndarray | None,
        settings: CubeSettings,
    ) -> list[tuple[int, bool]]:
        """(seq, was it an existing duplicate) per item, in order."""
        now = now_iso()
        out: list[tuple[int, bool]] = []
        fresh: list[tuple[int, int, np.ndarray]] = []
        for index, item in enumerate(items):
            digest = content_hash(item.content)
            # A message is an event in a conversation: the same words said twice are two turns, not a duplicate.
            if settings.dedupe_exact and item.kind != "message":
                existing = await conn.value(
                    "SELECT seq FROM memories WHERE cube_id = ? AND kind = ? AND content_hash = ?"
                    " AND deleted_at IS NULL AND superseded_by IS NULL",
                    (ref.id, item.kind, digest),
                )
                if existing is not None:
                    out.append((int(existing), True))
                    continue
            seq = await conn.execute(
                "INSERT INTO memories (id, cube_id, content, kind, tags, metadata, source_agent, task_id,"
                " created_at, updated_at, occurred_at, importance, expires_at, valid_from, content_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_memory_id(), ref.id, item.content, item.kind, _encode(item.tags).decode(),
                    _encode(item.metadata).decode(), agent.name, item.task_id, now, now, item.occurred_at,
                    item.importance, item.expires_at, item.occurred_at or now, digest,
                ),
            )  # fmt: skip
            out.append((seq, False))
            if vectors is not None:
                fresh.append((seq, ref.id, vectors[index]))
        if fresh:
            await self._vectors.put(conn, fresh)
        added = [seq for seq, dup in out if not dup]
        await index_entities(conn, added)
        if added:
            more = f" (+{len(added) - 1} more)" if len(added) > 1 else ""
            first = await conn.value("SELECT id FROM memories WHERE seq = ?", (added[0],), default="")
            await Audit.record(conn, agent.name, "memory_add", ref.name, first + more)
        return out

    async def _close(self, conn: Connection, agent: Agent, old_ids: list[str], new_seq: int) -> list[str]:
        """End the validity of the superseded memories at the new one's valid_from."""
        new = await self._read(conn, new_seq)
        assert new.valid_from is not None
        closed = []
        for old_id in old_ids:
            if old_id == new.id:
                raise InvalidInput("a memory cannot supersede itself")
            old = memory_from_row(await self._memories.row(conn, agent, old_id, "write", "memory_supersede"))
            if old.superseded_by is not None:
                raise Conflict(
                    f"memory {old_id} was already superseded by {old.superseded_by}; supersede that one"
                )
            if old.deleted_at is not None:
                raise Conflict(
                    f"memory {old_id} is deleted; memory_restore it first, or just add the new one"
                )
            if old.valid_from and new.valid_from < old.valid_from:
                raise InvalidInput(
                    f"the new memory is valid from {new.valid_from}, before {old_id} ({old.valid_from}):"
                    " give an occurred_at after it"
                )
            await conn.execute(
                "UPDATE memories SET valid_to = ?, superseded_by = ? WHERE id = ?",
                (new.valid_from, new.id, old_id),
            )
            await Audit.record(conn, agent.name, "memory_supersede", old.cube, old_id, f"by {new.id}")
            closed.append(old_id)
        return closed

    @staticmethod
    async def _read(conn: Connection, seq: int):  # type: ignore[no-untyped-def]
        row = await conn.row(f"SELECT {MEMORY_COLUMNS} FROM {MEMORY_FROM} WHERE m.seq = ?", (seq,))
        assert row is not None
        return memory_from_row(row)
