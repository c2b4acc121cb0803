"""Memories: add (single and atomic batch), get, update with history, soft delete and restore, list.

Each write checks the caller's permission inside its own transaction, embeds text before taking the write
lock (so the model never holds up other writers), and returns only after COMMIT.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Sequence
from typing import Any

import msgspec

from daemon.audit import Audit
from daemon.config import LimitsConfig
from daemon.content_hash import content_hash
from daemon.entities import index as index_entities
from daemon.errors import Conflict, InvalidInput, NotFound, shown
from daemon.events import ChangeHub, MemoryChanged
from daemon.filters import MemoryFilter
from daemon.idempotency import Recorder
from daemon.models import Agent, Memory, MemoryChanges, MemoryPage, MemoryVersion
from daemon.policy import AccessPolicy, CubeRef, Permission
from daemon.store import Connection, Store, placeholders
from daemon.timeutil import now_iso
from daemon.validation import check_changes, check_cube_ref
from daemon.vectors import VectorIndex
from daemon.working_memory import WorkingMemory

MEMORY_COLUMNS = (
    "m.seq, m.id, c.name, m.content, m.kind, m.tags, m.metadata, m.source_agent, m.task_id, m.created_at,"
    " m.updated_at, m.occurred_at, m.importance, m.expires_at, m.version, m.deleted_at, m.cube_id,"
    " m.valid_from, m.valid_to, m.superseded_by"
)
MEMORY_FROM = "memories m JOIN cubes c ON c.id = m.cube_id"
MAX_LIST_LIMIT = 500

_json = msgspec.json.Encoder()
_tags = msgspec.json.Decoder(list[str])
_meta = msgspec.json.Decoder(dict[str, Any])


def new_memory_id() -> str:
    return "mem_" + secrets.token_hex(8)


def memory_from_row(row: Sequence[Any]) -> Memory:
    return Memory(
        id=row[1],
        cube=row[2],
        content=row[3],
        kind=row[4],
        tags=_tags.decode(row[5]),
        metadata=_meta.decode(row[6]),
        source_agent=row[7],
        task_id=row[8],
        created_at=row[9],
        updated_at=row[10],
        occurred_at=row[11],
        importance=row[12],
        expires_at=row[13],
        version=row[14],
        deleted_at=row[15],
        valid_from=row[17],
        valid_to=row[18],
        superseded_by=row[19],
    )


def check_memory_id(memory_id: str, field: str = "id") -> str:
    if not isinstance(memory_id, str) or not memory_id.strip() or len(memory_id) > 64:
        raise InvalidInput(
            f"{field}: {shown(memory_id)} is not a memory id (ids look like mem_0123456789abcdef)"
        )
    return memory_id.strip()


class Memories:
    def __init__(
        self,
        store: Store,
        access: AccessPolicy,
        vectors: VectorIndex,
        limits: LimitsConfig,
        hub: ChangeHub | None = None,
        working: WorkingMemory | None = None,
    ) -> None:
        self._hub = hub or ChangeHub()
        self._working = working or WorkingMemory()
        self._store = store
        self._access = access
        self._vectors = vectors
        self._limits = limits

    async def row(
        self, conn: Connection, agent: Agent, memory_id: str, permission: Permission, action: str
    ) -> tuple[Any, ...]:
        """The memory's row, if the agent holds `permission` on its cube (NotFound if it may not read it)."""
        row = await conn.fetch_one(f"SELECT {MEMORY_COLUMNS} FROM {MEMORY_FROM} WHERE m.id = ?", (memory_id,))
        if row is None:
            raise NotFound(f"no memory with id {memory_id!r} that you can read; memory_search finds ids")
        await self._access.check_memory(conn, agent, row[16], row[2], memory_id, permission, action)
        return row

    async def get(self, agent: Agent, memory_id: str) -> Memory:
        memory_id = check_memory_id(memory_id)
        async with self._store.read() as conn:
            memory = memory_from_row(await self.row(conn, agent, memory_id, "read", "memory_get"))
        self._working.record(agent.name, [memory.id], "read")
        return memory

    async def update(
        self,
        agent: Agent,
        memory_id: str,
        changes: MemoryChanges,
        expected_version: int | None = None,
        recorder: Recorder | None = None,
    ) -> Memory:
        """Change the given fields; the previous version is kept and readable through `history`."""
        memory_id = check_memory_id(memory_id)
        changes = check_changes(changes, self._limits)
        async with self._store.read() as conn:
            await self.row(conn, agent, memory_id, "write", "memory_update")
        vectors = await self._vectors.embed([changes.content]) if changes.content is not None else None
        now = now_iso()
        async with self._store.write() as conn:
            old = await self.row(conn, agent, memory_id, "write", "memory_update")
            if old[15] is not None:
                raise Conflict(f"memory {memory_id} is deleted; memory_restore it before updating")
            if expected_version is not None and old[14] != expected_version:
                raise Conflict(
                    f"memory {memory_id} is at version {old[14]}, not {expected_version}: it changed since you"
                    " read it; memory_get it and decide again"
                )
            await conn.execute(
                "INSERT INTO memory_versions (memory_seq, version, content, kind, tags, metadata, importance,"
                " occurred_at, expires_at, updated_at, replaced_at, replaced_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    old[0],
                    old[14],
                    old[3],
                    old[4],
                    old[5],
                    old[6],
                    old[12],
                    old[11],
                    old[13],
                    old[10],
                    now,
                    agent.name,
                ),
            )
            new = {
                "content": changes.content if changes.content is not None else old[3],
                "kind": changes.kind or old[4],
                "tags": _json.encode(changes.tags).decode() if changes.tags is not None else old[5],
                "metadata": _json.encode(changes.metadata).decode()
                if changes.metadata is not None
                else old[6],
                "occurred_at": changes.occurred_at or old[11],
                "importance": changes.importance if changes.importance is not None else old[12],
                "expires_at": changes.expires_at or old[13],
            }
            await conn.execute(
                "UPDATE memories SET content = ?, kind = ?, tags = ?, metadata = ?, occurred_at = ?,"
                " importance = ?, expires_at = ?, updated_at = ?, version = version + 1, content_hash = ?,"
                " valid_from = CASE WHEN superseded_by IS NULL THEN coalesce(?, created_at) ELSE valid_from END"
                " WHERE seq = ?",
                (*new.values(), now, content_hash(str(new["content"])), new["occurred_at"], old[0]),
            )
            await index_entities(conn, [old[0]])
            if changes.content is not None and changes.content != old[3]:
                if vectors is not None:
                    await self._vectors.put(conn, [(old[0], old[16], vectors[0])])
                else:
                    await conn.execute("UPDATE memories SET embedded = 0 WHERE seq = ?", (old[0],))
            await Audit.record(conn, agent.name, "memory_update", old[2], memory_id, f"version {old[14] + 1}")
            result = await self._reread(conn, old[0], recorder)
        if changes.content is not None and vectors is None:
            self._vectors.wake()
        return result

    async def _reread(self, conn: Connection, seq: int, recorder: Recorder | None) -> Memory:
        """The memory as this transaction leaves it, recorded for idempotent retries if asked; listeners
        hear of the change once it commits."""
        row = await conn.fetch_one(f"SELECT {MEMORY_COLUMNS} FROM {MEMORY_FROM} WHERE m.seq = ?", (seq,))
        assert row is not None
        memory = memory_from_row(row)
        if recorder is not None:
            await recorder.record(conn, memory)
        conn.after_commit(lambda: self._hub.publish(MemoryChanged(memory.cube, memory.id)))
        return memory

    async def _set_deleted(
        self,
        agent: Agent,
        memory_id: str,
        deleted: bool,
        recorder: Recorder | None,
        reason: str | None = None,
    ) -> Memory:
        memory_id = check_memory_id(memory_id)
        action = "memory_delete" if deleted else "memory_restore"
        async with self._store.write() as conn:
            old = await self.row(conn, agent, memory_id, "write", action)
            # Deleting a deleted memory, or restoring a live one, changes nothing.
            if (old[15] is None) == deleted:
                await conn.execute(
                    "UPDATE memories SET deleted_at = ?, deleted_reason = ?,"
                    " kept_at = CASE WHEN ? AND deleted_reason LIKE 'retention%' THEN ? ELSE kept_at END"
                    " WHERE seq = ?",
                    (
                        now_iso() if deleted else None,
                        reason if deleted else None,
                        not deleted,
                        now_iso(),
                        old[0],
                    ),
                )
                await Audit.record(conn, agent.name, action, old[2], memory_id)
            return await self._reread(conn, old[0], recorder)

    async def delete(self, agent: Agent, memory_id: str, recorder: Recorder | None = None) -> Memory:
        """Soft delete: hidden from search and lists, restorable until compaction."""
        return await self._set_deleted(agent, memory_id, True, recorder)

    async def restore(self, agent: Agent, memory_id: str, recorder: Recorder | None = None) -> Memory:
        return await self._set_deleted(agent, memory_id, False, recorder)

    async def history(self, agent: Agent, memory_id: str) -> list[MemoryVersion]:
        """Every version, oldest first; the last one is the current text."""
        memory_id = check_memory_id(memory_id)
        async with self._store.read() as conn:
            row = await self.row(conn, agent, memory_id, "read", "memory_history")
            old = await conn.fetch_all(
                "SELECT version, content, kind, tags, metadata, importance, occurred_at, expires_at, updated_at,"
                " replaced_at, replaced_by FROM memory_versions WHERE memory_seq = ? ORDER BY version",
                (row[0],),
            )
        versions = [
            MemoryVersion(
                version=v[0],
                content=v[1],
                kind=v[2],
                tags=_tags.decode(v[3]),
                metadata=_meta.decode(v[4]),
                importance=v[5],
                occurred_at=v[6],
                expires_at=v[7],
                updated_at=v[8],
                current=False,
                replaced_at=v[9],
                replaced_by=v[10],
            )
            for v in old
        ]
        current = memory_from_row(row)
        versions.append(
            MemoryVersion(
                version=current.version,
                content=current.content,
                kind=current.kind,
                tags=current.tags,
                metadata=current.metadata,
                importance=current.importance,
                occurred_at=current.occurred_at,
                expires_at=current.expires_at,
                updated_at=current.updated_at,
                current=True,
            )
        )
        return versions

    async def predecessors(self, agent: Agent, memory_id: str) -> builtins.list[str]:
        """Ids of the memories this one superseded (those the agent may read)."""
        memory_id = check_memory_id(memory_id)
        async with self._store.read() as conn:
            await self.row(conn, agent, memory_id, "read", "memory_history")
            rows = await conn.fetch_all(
                "SELECT m.id, m.cube_id FROM memories m WHERE m.superseded_by = ? ORDER BY m.seq",
                (memory_id,),
            )
            levels = await self._access.levels(conn, agent, [row[1] for row in rows])
        return [row[0] for row in rows if row[1] in levels]

    async def scope(self, conn: Connection, agent: Agent, cubes: list[str] | None) -> list[CubeRef]:
        """The cubes a read covers: the named ones (each must be readable), else every readable cube."""
        if cubes:
            return [
                await self._access.require(conn, agent, check_cube_ref(name), "read")
                for name in dict.fromkeys(cubes)
            ]
        return await self._access.readable_cubes(conn, agent)

    async def list(
        self,
        agent: Agent,
        *,
        cubes: list[str] | None = None,
        where: MemoryFilter | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> MemoryPage:
        """Newest first, `limit` at a time; pass `next_cursor` back to get the next page."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidInput(f"limit must be from 1 to {MAX_LIST_LIMIT}, got {limit}")
        before = _decode_cursor(cursor) if cursor else None
        predicate, params = (where or MemoryFilter()).sql()
        async with self._store.read() as conn:
            refs = await self.scope(conn, agent, cubes)
            if not refs:
                return MemoryPage(memories=[], cubes=[])
            sql = (
                f"SELECT {MEMORY_COLUMNS} FROM {MEMORY_FROM}"
                f" WHERE m.cube_id IN ({placeholders(len(refs))}) {predicate}"
                + (" AND m.seq < ?" if before is not None else "")
                + " ORDER BY m.seq DESC LIMIT ?"
            )
            args = [ref.id for ref in refs] + params + ([before] if before is not None else []) + [limit + 1]
            rows = await conn.fetch_all(sql, args)
        page = rows[:limit]
        return MemoryPage(
            memories=[memory_from_row(r) for r in page],
            cubes=[ref.name for ref in refs],
            next_cursor=f"c{page[-1][0]}" if len(rows) > limit else None,
        )


def _decode_cursor(cursor: str) -> int:
    # ASCII digits only: str.isdigit() also accepts '²' or '٣', and a row number fits SQLite's 64-bit integer.
    digits = cursor[1:]
    if not cursor.startswith("c") or not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise InvalidInput(
            f"cursor {shown(cursor)} is not one this server returned; start again without a cursor"
        )
    return int(digits)
