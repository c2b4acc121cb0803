"""Memories: add (single and atomic batch), get, update with history, soft delete and restore, list.

Each write checks the caller's permission inside its own transaction, embeds text before taking the write
lock (so the model never holds up other writers), and returns only after COMMIT.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import msgspec

from daemon.audit import Audit
from daemon.config import LimitsConfig
from daemon.errors import Conflict, InvalidInput, NotFound
from daemon.filters import MemoryFilter
from daemon.models import Agent, Memory, MemoryChanges, MemoryPage, MemoryVersion, NewMemory
from daemon.policy import AccessPolicy, CubeRef, Permission
from daemon.store import Connection, Store, placeholders
from daemon.timeutil import now_iso
from daemon.validation import check_changes, check_cube_ref, check_new_memory
from daemon.vectors import VectorIndex

MEMORY_COLUMNS = (
    "m.seq, m.id, c.name, m.content, m.kind, m.tags, m.metadata, m.source_agent, m.task_id, m.created_at,"
    " m.updated_at, m.occurred_at, m.importance, m.expires_at, m.version, m.deleted_at, m.cube_id"
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
    )


def check_memory_id(memory_id: str) -> str:
    if not isinstance(memory_id, str) or not memory_id.strip() or len(memory_id) > 64:
        raise InvalidInput(f"{memory_id!r} is not a memory id (ids look like mem_0123456789abcdef)")
    return memory_id.strip()


class Memories:
    def __init__(
        self, store: Store, access: AccessPolicy, vectors: VectorIndex, limits: LimitsConfig
    ) -> None:
        self._store = store
        self._access = access
        self._vectors = vectors
        self._limits = limits

    async def _writable_cube(self, agent: Agent, cube: str | None) -> str:
        name = check_cube_ref(cube) if cube else agent.home_cube
        async with self._store.read() as conn:  # fail fast, before spending time on embeddings
            await self._access.require(conn, agent, name, "write", "memory_add")
        return name

    async def add(self, agent: Agent, cube: str | None, item: NewMemory) -> Memory:
        return (await self.add_batch(agent, cube, [item], field_prefix=""))[0]

    async def add_batch(
        self, agent: Agent, cube: str | None, items: list[NewMemory], *, field_prefix: str = "items"
    ) -> list[Memory]:
        """Add every item or none; items are validated first and errors name the item's index."""
        if not items:
            raise InvalidInput("items is empty: give at least one memory")
        if len(items) > self._limits.max_batch:
            raise InvalidInput(
                f"items has {len(items)} memories; the limit is {self._limits.max_batch} per batch"
            )
        checked = [
            check_new_memory(item, self._limits, f"{field_prefix}[{i}]." if field_prefix else "")
            for i, item in enumerate(items)
        ]
        cube_name = await self._writable_cube(agent, cube)
        vectors = await self._vectors.embed([item.content for item in checked])
        now = now_iso()
        rows = [
            (
                new_memory_id(),
                item.content,
                item.kind,
                _json.encode(item.tags).decode(),
                _json.encode(item.metadata).decode(),
                agent.name,
                item.task_id,
                now,
                now,
                item.occurred_at,
                item.importance,
                item.expires_at,
            )
            for item in checked
        ]
        async with self._store.write() as conn:
            ref = await self._access.require(conn, agent, cube_name, "write", "memory_add")
            seqs = []
            for row in rows:
                seqs.append(
                    await conn.execute(
                        "INSERT INTO memories (id, cube_id, content, kind, tags, metadata, source_agent, task_id,"
                        " created_at, updated_at, occurred_at, importance, expires_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (row[0], ref.id, *row[1:]),
                    )
                )
            if vectors is not None:
                await self._vectors.put(
                    conn, [(seq, ref.id, vec) for seq, vec in zip(seqs, vectors, strict=True)]
                )
            more = f" (+{len(rows) - 1} more)" if len(rows) > 1 else ""
            await Audit.record(conn, agent.name, "memory_add", ref.name, rows[0][0] + more)
        if vectors is None:
            self._vectors.wake()
        return [
            memory_from_row((seq, row[0], ref.name, *row[1:], 1, None, ref.id))
            for seq, row in zip(seqs, rows, strict=True)
        ]

    async def _row(
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
            return memory_from_row(await self._row(conn, agent, memory_id, "read", "memory_get"))

    async def update(
        self, agent: Agent, memory_id: str, changes: MemoryChanges, expected_version: int | None = None
    ) -> Memory:
        """Change the given fields; the previous version is kept and readable through `history`."""
        memory_id = check_memory_id(memory_id)
        changes = check_changes(changes, self._limits)
        async with self._store.read() as conn:
            await self._row(conn, agent, memory_id, "write", "memory_update")
        vectors = await self._vectors.embed([changes.content]) if changes.content is not None else None
        now = now_iso()
        async with self._store.write() as conn:
            old = await self._row(conn, agent, memory_id, "write", "memory_update")
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
                " importance = ?, expires_at = ?, updated_at = ?, version = version + 1 WHERE seq = ?",
                (*new.values(), now, old[0]),
            )
            if changes.content is not None and changes.content != old[3]:
                if vectors is not None:
                    await self._vectors.put(conn, [(old[0], old[16], vectors[0])])
                else:
                    await conn.execute("UPDATE memories SET embedded = 0 WHERE seq = ?", (old[0],))
            await Audit.record(conn, agent.name, "memory_update", old[2], memory_id, f"version {old[14] + 1}")
            row = await conn.fetch_one(
                f"SELECT {MEMORY_COLUMNS} FROM {MEMORY_FROM} WHERE m.seq = ?", (old[0],)
            )
        if changes.content is not None and vectors is None:
            self._vectors.wake()
        assert row is not None
        return memory_from_row(row)

    async def _set_deleted(self, agent: Agent, memory_id: str, deleted: bool) -> Memory:
        memory_id = check_memory_id(memory_id)
        action = "memory_delete" if deleted else "memory_restore"
        async with self._store.write() as conn:
            old = await self._row(conn, agent, memory_id, "write", action)
            if deleted and old[15] is not None:
                return memory_from_row(old)  # deleting twice changes nothing
            if not deleted and old[15] is None:
                return memory_from_row(old)  # restoring a live memory changes nothing
            await conn.execute(
                "UPDATE memories SET deleted_at = ? WHERE seq = ?", (now_iso() if deleted else None, old[0])
            )
            await Audit.record(conn, agent.name, action, old[2], memory_id)
            row = await conn.fetch_one(
                f"SELECT {MEMORY_COLUMNS} FROM {MEMORY_FROM} WHERE m.seq = ?", (old[0],)
            )
        assert row is not None
        return memory_from_row(row)

    async def delete(self, agent: Agent, memory_id: str) -> Memory:
        """Soft delete: hidden from search and lists, restorable until compaction."""
        return await self._set_deleted(agent, memory_id, True)

    async def restore(self, agent: Agent, memory_id: str) -> Memory:
        return await self._set_deleted(agent, memory_id, False)

    async def history(self, agent: Agent, memory_id: str) -> list[MemoryVersion]:
        """Every version, oldest first; the last one is the current text."""
        memory_id = check_memory_id(memory_id)
        async with self._store.read() as conn:
            row = await self._row(conn, agent, memory_id, "read", "memory_history")
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
    if not cursor.startswith("c") or not cursor[1:].isdigit():
        raise InvalidInput(f"cursor {cursor!r} is not one this server returned; start again without a cursor")
    return int(cursor[1:])
