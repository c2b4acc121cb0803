"""Memories: add (single and atomic batch), get, update with history, soft delete and restore, list.

Each write checks the caller's permission inside its own transaction, embeds text before taking the write
lock (so the model never holds up other writers), and returns only after COMMIT.
"""

from __future__ import annotations

import builtins
import secrets
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
from daemon.redaction import Redactor
from daemon.rows import Row
from daemon.settings_store import CubeSettingsStore
from daemon.store import Connection, Store, placeholders
from daemon.timeutil import now_iso
from daemon.validation import check_changes, check_cube_ref
from daemon.vectors import VectorIndex
from daemon.working_memory import WorkingMemory

MEMORY_COLUMNS = (
    "m.seq, m.id, c.name AS cube, m.content, m.kind, m.tags, m.metadata, m.source_agent, m.task_id, m.created_at,"
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


def memory_from_row(row: Row) -> Memory:
    """The Memory of a row selected with MEMORY_COLUMNS."""
    return Memory(
        id=row["id"],
        cube=row["cube"],
        content=row["content"],
        kind=row["kind"],
        tags=_tags.decode(row["tags"]),
        metadata=_meta.decode(row["metadata"]),
        source_agent=row["source_agent"],
        task_id=row["task_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        occurred_at=row["occurred_at"],
        importance=row["importance"],
        expires_at=row["expires_at"],
        version=row["version"],
        deleted_at=row["deleted_at"],
        valid_from=row["valid_from"],
        valid_to=row["valid_to"],
        superseded_by=row["superseded_by"],
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
        *,
        settings: CubeSettingsStore,
        redactor: Redactor,
    ) -> None:
        self._settings = settings
        self._redactor = redactor  # for cubes whose redact_secrets setting is on
        self._hub = hub or ChangeHub()
        self._working = working or WorkingMemory()
        self._store = store
        self._access = access
        self._vectors = vectors
        self._limits = limits

    async def row(
        self, conn: Connection, agent: Agent, memory_id: str, permission: Permission, action: str
    ) -> Row:
        """The memory's row (MEMORY_COLUMNS), if the agent holds `permission` on its cube (NotFound if it may not read it)."""
        row = await conn.row(f"SELECT {MEMORY_COLUMNS} FROM {MEMORY_FROM} WHERE m.id = ?", (memory_id,))
        if row is None:
            raise NotFound(f"no memory with id {memory_id!r} that you can read; memory_search finds ids")
        await self._access.check_memory(
            conn, agent, row["cube_id"], row["cube"], memory_id, permission, action
        )
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
            current = await self.row(conn, agent, memory_id, "write", "memory_update")
            settings = await self._settings.effective(CubeRef(current["cube_id"], current["cube"]), conn)
        if settings.redact_secrets:  # before anything is embedded, indexed or stored
            changes = self._redactor.changes(changes)
        vectors = await self._vectors.embed([changes.content]) if changes.content is not None else None
        now = now_iso()
        async with self._store.write() as conn:
            old = await self.row(conn, agent, memory_id, "write", "memory_update")
            if old["deleted_at"] is not None:
                raise Conflict(f"memory {memory_id} is deleted; memory_restore it before updating")
            if expected_version is not None and old["version"] != expected_version:
                raise Conflict(
                    f"memory {memory_id} is at version {old['version']}, not {expected_version}: it changed since you"
                    " read it; memory_get it and decide again"
                )
            await conn.execute(
                "INSERT INTO memory_versions (memory_seq, version, content, kind, tags, metadata, importance,"
                " occurred_at, expires_at, updated_at, replaced_at, replaced_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    old["seq"],
                    old["version"],
                    old["content"],
                    old["kind"],
                    old["tags"],
                    old["metadata"],
                    old["importance"],
                    old["occurred_at"],
                    old["expires_at"],
                    old["updated_at"],
                    now,
                    agent.name,
                ),
            )
            new = {
                "content": changes.content if changes.content is not None else old["content"],
                "kind": changes.kind or old["kind"],
                "tags": _json.encode(changes.tags).decode() if changes.tags is not None else old["tags"],
                "metadata": _json.encode(changes.metadata).decode()
                if changes.metadata is not None
                else old["metadata"],
                "occurred_at": changes.occurred_at or old["occurred_at"],
                "importance": changes.importance if changes.importance is not None else old["importance"],
                "expires_at": changes.expires_at or old["expires_at"],
            }
            await conn.execute(
                "UPDATE memories SET content = ?, kind = ?, tags = ?, metadata = ?, occurred_at = ?,"
                " importance = ?, expires_at = ?, updated_at = ?, version = version + 1, content_hash = ?,"
                " valid_from = CASE WHEN superseded_by IS NULL THEN coalesce(?, created_at) ELSE valid_from END"
                " WHERE seq = ?",
                (*new.values(), now, content_hash(str(new["content"])), new["occurred_at"], old["seq"]),
            )
            await index_entities(conn, [old["seq"]])
            if changes.content is not None and changes.content != old["content"]:
                if vectors is not None:
                    await self._vectors.put(conn, [(old["seq"], old["cube_id"], vectors[0])])
                else:
                    await conn.execute("UPDATE memories SET embedded = 0 WHERE seq = ?", (old["seq"],))
            await Audit.record(
                conn, agent.name, "memory_update", old["cube"], memory_id, f"version {old['version'] + 1}"
            )
            result = await self._reread(conn, old["seq"], recorder)
        if changes.content is not None and vectors is None:
            self._vectors.wake()
        return result

    async def _reread(self, conn: Connection, seq: int, recorder: Recorder | None) -> Memory:
        """The memory as this transaction leaves it, recorded for idempotent retries if asked; listeners
        hear of the change once it commits."""
        row = await conn.row(f"SELECT {MEMORY_COLUMNS} FROM {MEMORY_FROM} WHERE m.seq = ?", (seq,))
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
            if (old["deleted_at"] is None) == deleted:
                await conn.execute(
                    "UPDATE memories SET deleted_at = ?, deleted_reason = ?,"
                    " kept_at = CASE WHEN ? AND deleted_reason LIKE 'retention%' THEN ? ELSE kept_at END"
                    " WHERE seq = ?",
                    (
                        now_iso() if deleted else None,
                        reason if deleted else None,
                        not deleted,
                        now_iso(),
                        old["seq"],
                    ),
                )
                await Audit.record(conn, agent.name, action, old["cube"], memory_id)
            return await self._reread(conn, old["seq"], recorder)

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
            old = await conn.rows(
                "SELECT version, content, kind, tags, metadata, importance, occurred_at, expires_at, updated_at,"
                " replaced_at, replaced_by FROM memory_versions WHERE memory_seq = ? ORDER BY version",
                (row["seq"],),
            )
        versions = [
            MemoryVersion(
                version=v["version"],
                content=v["content"],
                kind=v["kind"],
                tags=_tags.decode(v["tags"]),
                metadata=_meta.decode(v["metadata"]),
                importance=v["importance"],
                occurred_at=v["occurred_at"],
                expires_at=v["expires_at"],
                updated_at=v["updated_at"],
                current=False,
                replaced_at=v["replaced_at"],
                replaced_by=v["replaced_by"],
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
            rows = await conn.rows(
                "SELECT m.id, m.cube_id FROM memories m WHERE m.superseded_by = ? ORDER BY m.seq",
                (memory_id,),
            )
            levels = await self._access.levels(conn, agent, [row["cube_id"] for row in rows])
        return [row["id"] for row in rows if row["cube_id"] in levels]

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
        scan_limit: int | None = None,
    ) -> MemoryPage:
        """Newest first, `limit` at a time; pass `next_cursor` back to get the next page.

        `scan_limit` bounds the work of one page for a single cube: only that many of the cube's memories
        (from the cursor back) are looked at, so a filter that matches little returns a short page (perhaps
        an empty one) with a `next_cursor` to look further, instead of reading the whole cube.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidInput(f"limit must be from 1 to {MAX_LIST_LIMIT}, got {limit}")
        before = _decode_cursor(cursor) if cursor else None
        predicate, params = (where or MemoryFilter()).sql()
        async with self._store.read() as conn:
            refs = await self.scope(conn, agent, cubes)
            if not refs:
                return MemoryPage(memories=[], cubes=[])
            floor, older = None, False
            if scan_limit is not None and len(refs) == 1:
                floor, older = await self._scan_floor(conn, refs[0].id, before, scan_limit)
            sql = (
                f"SELECT {MEMORY_COLUMNS} FROM {MEMORY_FROM}"
                f" WHERE m.cube_id IN ({placeholders(len(refs))}) {predicate}"
                + (" AND m.seq < ?" if before is not None else "")
                + (" AND m.seq >= ?" if floor is not None else "")
                + " ORDER BY m.seq DESC LIMIT ?"
            )
            args = [ref.id for ref in refs] + params + ([before] if before is not None else [])
            rows = await conn.rows(sql, [*args, *([floor] if floor is not None else []), limit + 1])
        page = rows[:limit]
        if len(rows) > limit:
            next_cursor: str | None = f"c{page[-1]['seq']}"
        elif floor is not None and older:  # the window ran out before the page filled
            next_cursor = f"c{floor}"
        else:
            next_cursor = None
        return MemoryPage(
            memories=[memory_from_row(r) for r in page],
            cubes=[ref.name for ref in refs],
            next_cursor=next_cursor,
        )

    async def deletion_reasons(self, agent: Agent, memory_ids: builtins.list[str]) -> dict[str, str]:
        """Why each of these deleted memories was deleted ("retention: …" when retention archived it), for
        those the agent may read; ids it may not read, and memories not deleted, are left out."""
        if not memory_ids:
            return {}
        async with self._store.read() as conn:
            refs = await self._access.readable_cubes(conn, agent)
            if not refs:
                return {}
            rows = await conn.rows(
                f"SELECT id, deleted_reason FROM memories WHERE id IN ({placeholders(len(memory_ids))})"
                f" AND cube_id IN ({placeholders(len(refs))}) AND deleted_at IS NOT NULL",
                [*memory_ids, *(ref.id for ref in refs)],
            )
        return {row["id"]: row["deleted_reason"] or "deleted" for row in rows}

    @staticmethod
    async def _scan_floor(
        conn: Connection, cube_id: int, before: int | None, scan_limit: int
    ) -> tuple[int | None, bool]:
        """The seq of the `scan_limit`-th memory of the cube below `before` (None when fewer remain), and
        whether any memory is older than it."""
        rows = await conn.rows(
            "SELECT seq FROM memories INDEXED BY memories_by_cube_seq WHERE cube_id = ?"
            + (" AND seq < ?" if before is not None else "")
            + " ORDER BY seq DESC LIMIT 2 OFFSET ?",
            [cube_id, *([before] if before is not None else []), scan_limit - 1],
        )
        return (int(rows[0]["seq"]) if rows else None), len(rows) == 2


def _decode_cursor(cursor: str) -> int:
    # ASCII digits only: str.isdigit() also accepts '²' or '٣', and a row number fits SQLite's 64-bit integer.
    digits = cursor[1:]
    if not cursor.startswith("c") or not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise InvalidInput(
            f"cursor {shown(cursor)} is not one this server returned; start again without a cursor"
        )
    return int(digits)
