"""Adding memories: single and atomic batch, exact-duplicate suppression, similar memories reported, and
supersession (a new memory closes the validity of the ones it replaces).

Text is embedded before the write lock is taken, so the model never holds up other writers (a single
add's text while its cube's permission and settings are read, unless it holds something to redact). Similar
memories are looked up (the KNN on a worker thread, then their rows) on a reader while the write runs: the
write does not need them, and the add answers once both are done. Everything else — the permission checks,
the duplicate check, closing superseded memories, the vectors, the entities, the audit entry and the
idempotency record — happens in one transaction, a batch's rows a few dozen to a statement, and what the
write inserted is answered from what it knew, not read back.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import msgspec
import numpy as np

from daemon.audit import Audit
from daemon.config import LimitsConfig
from daemon.content_hash import content_hash
from daemon.cube_settings import CubeSettings
from daemon.entities import index_new as index_entities
from daemon.errors import Conflict, InvalidInput, MemosError
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
from daemon.models import AddedMemory, Agent, BatchAdded, Memory, NewMemory, Similar
from daemon.policy import AccessPolicy, CubeRef
from daemon.redaction import Redactor
from daemon.rows import Row
from daemon.settings_store import CubeSettingsStore
from daemon.store import Connection, Store, placeholders
from daemon.timeutil import now_iso
from daemon.validation import check_cube_ref, check_new_memory
from daemon.vectors import VectorIndex
from daemon.working_memory import WorkingMemory

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_SIMILAR_CANDIDATES = 8
_COLUMNS = (
    "id, cube_id, content, kind, tags, metadata, source_agent, task_id, created_at, updated_at, occurred_at,"
    " importance, expires_at, valid_from, content_hash"
)
_ROW = "(" + placeholders(15) + ", {embedded})"  # embedded: a literal, the same for every row of a call
_INSERT_ROWS = 64  # rows a statement: 960 values, under every SQLite's limit on bound values
_CURRENT_WITH_HASH = (  # a current memory of cube ? with kind ? and content hash ?
    "SELECT 1 FROM memories INDEXED BY memories_current_by_hash WHERE cube_id = ? AND kind = ?"
    " AND content_hash = ? AND deleted_at IS NULL AND superseded_by IS NULL"
)


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
        """Add one memory; report similar ones; close the validity of those it `supersedes`.

        The similar-memory lookup (a KNN over the cube's vectors on a worker thread, then those memories'
        rows, on a reader) runs while the write does: the write does not need it, so an add costs the longer
        of the two, not both. Its result is what the cube held before this add (the memories this one
        supersedes included, itself left out)."""
        checked = check_new_memory(item, self._limits)
        old_ids = [check_memory_id(i, "supersedes") for i in dict.fromkeys(supersedes or [])]
        name, ref, settings, checked, vectors = await self._prepared_and_embedded(agent, cube, checked)
        threshold = settings.similar_threshold
        lookup = _Lookup()
        failed: Exception | None = None
        async with anyio.create_task_group() as tg:
            if vectors is not None and settings.report_similar and threshold is not None:
                tg.start_soon(self._nearest, ref, vectors[0], threshold, lookup)
            else:
                lookup.done.set()
            try:
                result = await self._write_one(
                    agent, name, checked, vectors, settings, old_ids, recorder, lookup
                )
            except Exception as exc:  # noqa: BLE001 - raised below as itself, not wrapped in a group
                failed = exc
                tg.cancel_scope.cancel()
        if failed is not None:
            raise failed
        if recorder is None:
            result.similar = lookup.similar(ref, result.id)
        if vectors is None:
            self._vectors.wake()
        return result

    async def _write_one(
        self,
        agent: Agent,
        name: str,
        checked: NewMemory,
        vectors: np.ndarray | None,
        settings: CubeSettings,
        old_ids: list[str],
        recorder: Recorder | None,
        lookup: _Lookup,
    ) -> AddedMemory:
        now = now_iso()
        async with self._store.write() as conn:
            ref = await self._access.require(conn, agent, name, "write", "memory_add")
            [(seq, memory_id, duplicate)] = await self._insert(
                conn, agent, ref, [checked], vectors, settings, now
            )
            if duplicate:  # the memory that was there
                memory = await self._read(conn, seq)
            else:  # what the write stored, as a read of its row would give it
                memory = Memory(
                    id=memory_id, cube=ref.name, content=checked.content, kind=checked.kind,
                    tags=list(checked.tags), metadata=dict(checked.metadata), source_agent=agent.name,
                    task_id=checked.task_id, created_at=now, updated_at=now, occurred_at=checked.occurred_at,
                    importance=checked.importance, expires_at=checked.expires_at, version=1,
                    valid_from=checked.occurred_at or now,
                )  # fmt: skip
            superseded = await self._close(conn, agent, old_ids, memory) if old_ids else []
            result = AddedMemory(**msgspec.structs.asdict(memory), duplicate=duplicate, superseded=superseded)
            if recorder is not None:  # the recorded result is the whole result: the lookup is awaited here
                await lookup.done.wait()
                result.similar = lookup.similar(ref, memory_id)
                await recorder.record(conn, result)
            self._announce(conn, agent, result.cube, [result.id, *superseded], checked.task_id)
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
            inserted = await self._insert(conn, agent, ref, checked, vectors, settings, now_iso())
            result = BatchAdded(
                ids=[memory_id for _, memory_id, _ in inserted],
                cube=ref.name,
                count=len(inserted),
                duplicates=list(dict.fromkeys(memory_id for _, memory_id, dup in inserted if dup)),
            )
            if recorder is not None:
                await recorder.record(conn, result)
            self._announce(conn, agent, result.cube, result.ids, checked[0].task_id)
        if vectors is None:
            self._vectors.wake()
        return result

    async def _prepared_and_embedded(
        self, agent: Agent, cube: str | None, item: NewMemory
    ) -> tuple[str, CubeRef, CubeSettings, NewMemory, np.ndarray | None]:
        """`_prepare`'s cube, ref and settings; the item, redacted if the cube says so; and its vector.

        A text with nothing a redaction would mask is embedded while the permission and the settings are
        read: its vector is the same whatever the cube's `redact_secrets`. One with something to mask waits
        for the settings, so the model never reads a secret that the cube redacts. A refused call's vector
        is dropped."""
        if self._redactor.text(item.content) != item.content:
            name, ref, settings = await self._prepare(agent, cube)
            if settings.redact_secrets:  # before anything is embedded, indexed or stored
                item = self._redactor.new_memory(item)
            return name, ref, settings, item, await self._vectors.embed([item.content])
        embedded: list[np.ndarray | None] = []
        failed: list[Exception] = []

        async def embed() -> None:
            try:
                embedded.append(await self._vectors.embed([item.content]))
            except Exception as exc:  # noqa: BLE001 - raised below as itself, not wrapped in a group
                failed.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(embed)
            try:
                name, ref, settings = await self._prepare(agent, cube)
            except Exception as exc:  # noqa: BLE001 - raised below as itself, not wrapped in a group
                failed.insert(0, exc)
                tg.cancel_scope.cancel()
        if failed:
            raise failed[0]
        if settings.redact_secrets:  # the tags and metadata (the content has nothing to mask)
            item = self._redactor.new_memory(item)
        return name, ref, settings, item, embedded[0]

    async def _prepare(self, agent: Agent, cube: str | None) -> tuple[str, CubeRef, CubeSettings]:
        """The cube's name and ref, checked writable before anything is written; its settings."""
        name = check_cube_ref(cube) if cube else agent.home_cube
        async with self._store.read() as conn:
            ref = await self._access.require(conn, agent, name, "write", "memory_add")
            settings = await self._settings.effective(ref, conn)
        return name, ref, settings

    async def _nearest(self, ref: CubeRef, vector: np.ndarray, threshold: float, lookup: _Lookup) -> None:
        """The cube's memories at least `threshold` similar to `vector`, best first, and their rows (on the
        same reader, while the write runs), into `lookup`."""
        try:
            async with self._store.read() as conn:
                near = await self._vectors.nearest(conn, vector, [ref.id], _SIMILAR_CANDIDATES)
                near = [(s, score) for s, score in near if score >= threshold]
                rows = await conn.rows(
                    "SELECT seq, id, content, superseded_by FROM memories"
                    f" WHERE seq IN ({placeholders(len(near))}) AND deleted_at IS NULL",
                    [s for s, _ in near],
                ) if near else []  # fmt: skip
            lookup.near, lookup.rows = near, {row["seq"]: row for row in rows}
        except MemosError as exc:  # advisory: the add itself goes on (and may have committed already)
            log.warning("similar memories not looked up for an add to %s: %s", ref.name, exc)
        finally:
            lookup.done.set()

    async def _insert(
        self,
        conn: Connection,
        agent: Agent,
        ref: CubeRef,
        items: list[NewMemory],
        vectors: np.ndarray | None,
        settings: CubeSettings,
        now: str,
    ) -> list[tuple[int, str, bool]]:
        """(seq, id, was it a duplicate) per item, in order. An item whose text (and kind) a current memory
        of the cube has, or an earlier item of the same call, is that memory; the others are inserted a
        few dozen rows to a statement (marked embedded when `vectors` come with them), created at `now`."""
        digests = [content_hash(item.content) for item in items]
        # A message is an event in a conversation: the same words said twice are two turns, not a duplicate.
        checked = [settings.dedupe_exact and item.kind != "message" for item in items]
        # One text to check (a single add): its INSERT skips it if a current memory has it, one statement
        # instead of a check and an insert; the memory that has it is read only then.
        single = checked == [True]
        known: dict[tuple[str, str], tuple[int | None, str]] = {}
        if not single:
            known.update(
                await _current(
                    conn, ref.id, {(i.kind, d) for i, d, c in zip(items, digests, checked, strict=True) if c}
                )
            )
        rows: list[tuple[Any, ...]] = []
        plan: list[tuple[int | None, str, bool]] = []  # (seq, None until inserted; id; duplicate)
        for item, digest, check in zip(items, digests, checked, strict=True):
            if check and (item.kind, digest) in known:
                plan.append((*known[(item.kind, digest)], True))
                continue
            memory_id = new_memory_id()
            if check:
                known[(item.kind, digest)] = (None, memory_id)
            plan.append((None, memory_id, False))
            rows.append(
                (
                    memory_id, ref.id, item.content, item.kind, _encode(item.tags).decode(),
                    _encode(item.metadata).decode(), agent.name, item.task_id, now, now, item.occurred_at,
                    item.importance, item.expires_at, item.occurred_at or now, digest,
                )
            )  # fmt: skip
        seq_of: dict[str, int] = {}
        row_sql = _ROW.format(embedded=0 if vectors is None else 1)
        for start in range(0, len(rows), _INSERT_ROWS):
            chunk = rows[start : start + _INSERT_ROWS]
            if single:
                returned = await conn.rows(
                    f"INSERT INTO memories ({_COLUMNS}, embedded) SELECT {row_sql[1:-1]} WHERE NOT EXISTS"
                    f" ({_CURRENT_WITH_HASH}) RETURNING seq, id",
                    [*chunk[0], ref.id, items[0].kind, digests[0]],
                )
                if not returned:  # a current memory of the cube has this text: the add is that memory
                    key = (items[0].kind, digests[0])
                    found = await _current(conn, ref.id, {key})
                    if not found:  # deleted in between, by another daemon on the same database
                        raise Conflict(
                            "a memory with the same text changed while this one was added; add again"
                        )
                    plan, rows = [(*found[key], True)], []
            else:
                returned = await conn.rows(
                    f"INSERT INTO memories ({_COLUMNS}, embedded) VALUES "
                    + ", ".join([row_sql] * len(chunk))
                    + " RETURNING seq, id",
                    [value for row in chunk for value in row],
                )
            seq_of.update((row["id"], int(row["seq"])) for row in returned)
        out = [(seq_of[memory_id] if seq is None else seq, memory_id, dup) for seq, memory_id, dup in plan]
        if vectors is not None:
            fresh = [(seq, ref.id, vectors[index]) for index, (seq, _, dup) in enumerate(out) if not dup]
            if fresh:
                await self._vectors.put(conn, fresh, mark=False)
        added = [(seq, memory_id) for seq, memory_id, dup in out if not dup]
        # (seq, cube id, content, metadata) of what was inserted, in order: the rows were built in `out`'s
        # order, each non-duplicate once.
        await index_entities(
            conn, [(seq, ref.id, row[2], row[5]) for (seq, _), row in zip(added, rows, strict=True)]
        )
        if added:
            more = f" (+{len(added) - 1} more)" if len(added) > 1 else ""
            await Audit.record(conn, agent.name, "memory_add", ref.name, added[0][1] + more)
        return out

    async def _close(self, conn: Connection, agent: Agent, old_ids: list[str], new: Memory) -> list[str]:
        """End the validity of the superseded memories at the new one's valid_from."""
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
    async def _read(conn: Connection, seq: int) -> Memory:
        row = await conn.row(f"SELECT {MEMORY_COLUMNS} FROM {MEMORY_FROM} WHERE m.seq = ?", (seq,))
        assert row is not None
        return memory_from_row(row)


class _Lookup:
    """The similar-memory lookup of one add, once `done`: (seq, score) at or above the cube's threshold,
    best first, and the rows of those not deleted (read beside the write: before or after its commit)."""

    def __init__(self) -> None:
        self.near: list[tuple[int, float]] = []
        self.rows: dict[int, Row] = {}
        self.done = anyio.Event()

    def similar(self, ref: CubeRef, new_id: str) -> list[Similar]:
        """The current memories among `near` as they were before the add of `new_id`: those it superseded
        count (they were current; read after the commit they name it), the new memory itself does not."""
        return [
            Similar(id=row["id"], cube=ref.name, content=row["content"], score=round(score, 4))
            for seq, score in self.near
            if (row := self.rows.get(seq)) is not None
            and row["id"] != new_id
            and row["superseded_by"] in (None, new_id)
        ]


async def _current(
    conn: Connection, cube_id: int, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str]]:
    """(seq, id) of the current memory of the cube with each (kind, content hash), the oldest if several."""
    if not keys:
        return {}
    kinds = sorted({kind for kind, _ in keys})
    digests = sorted({digest for _, digest in keys})
    found: dict[tuple[str, str], tuple[int, str]] = {}
    for start in range(0, len(digests), _INSERT_ROWS * 8):
        part = digests[start : start + _INSERT_ROWS * 8]
        rows = await conn.rows(
            "SELECT seq, id, kind, content_hash FROM memories INDEXED BY memories_current_by_hash"
            f" WHERE cube_id = ? AND kind IN ({placeholders(len(kinds))})"
            f" AND content_hash IN ({placeholders(len(part))}) AND deleted_at IS NULL AND superseded_by IS NULL",
            [cube_id, *kinds, *part],
        )
        for row in rows:
            key, seq = (row["kind"], row["content_hash"]), int(row["seq"])
            if key in keys and (key not in found or seq < found[key][0]):
                found[key] = (seq, row["id"])
    return found
