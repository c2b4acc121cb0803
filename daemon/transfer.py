"""Moving memories in and out: JSONL export with every field, the whole history, the supersession links and
the typed links each memory starts (`links`), and an import that is idempotent, validates every line, and
reports bad lines by number (or, strict, writes nothing). `export --all` adds the cubes, agents, groups,
grants and tasks (`daemon/transfer_records.py`).

Imports write rows without vectors; the daemon's backfill embeds them (at once if it wrote them, within
seconds if another process did).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from daemon.config import LimitsConfig
from daemon.content_hash import content_hash
from daemon.entities import index as index_entities
from daemon.errors import InvalidInput, MemosError
from daemon.links import check_relation
from daemon.models import MEMORY_KINDS, NewMemory
from daemon.redaction import Redactor
from daemon.settings_store import CubeSettingsStore
from daemon.store import Connection, Store, placeholders
from daemon.timeutil import now_iso, parse_time
from daemon.transfer_records import (
    RECORD_TYPES,
    AgentRecord,
    SetupRecord,
    check_setup,
    decode_setup,
    export_setup,
    write_setup,
)
from daemon.validation import check_cube_ref, check_name, check_new_memory, private_cube_of

_BATCH = 500


class Version(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: int
    content: str
    kind: str
    tags: list[str]
    metadata: dict[str, Any]
    importance: float
    occurred_at: str | None
    expires_at: str | None
    updated_at: str
    replaced_at: str
    replaced_by: str


class LinkRecord(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A link the memory starts: this memory <relation> `to`. A `to` not in the store is kept, and shows
    once that memory is there (a later import of its cube)."""

    relation: str
    to: str
    created_at: str | None = None  # default: the import's time
    created_by: str | None = None  # default: the memory's agent


class MemoryRecord(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One JSONL line. Export writes every field; import needs only `content`, plus the agent and kind
    (from the line or from the file-wide defaults)."""

    id: str | None = None
    content: str
    cube: str | None = None
    cube_owner: str | None = None
    cube_description: str | None = None
    kind: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    source_agent: str | None = None
    task_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    occurred_at: str | None = None
    importance: float = 0.5
    expires_at: str | None = None
    version: int = 1
    deleted_at: str | None = None
    deleted_reason: str | None = None  # why it was deleted: "retention: ..." when retention archived it
    kept_at: str | None = None  # restored after retention archived it: retention leaves it alone
    valid_from: str | None = None  # default: occurred_at, else created_at
    valid_to: str | None = None
    superseded_by: str | None = None
    supersedes: list[str] = msgspec.field(default_factory=list)  # ids this one replaced
    history: list[Version] = msgspec.field(default_factory=list)
    links: list[LinkRecord] = msgspec.field(default_factory=list)


class ImportDefaults(msgspec.Struct, kw_only=True):
    agent: str | None = None
    kind: str | None = None
    cube: str | None = None


class Located(msgspec.Struct, frozen=True):
    """One item of a source that is not our JSONL (a conversation's message, an observation): where it is,
    for errors, and either its line in the export format or what is wrong with it."""

    where: str  # "conversation 2 ('Trip'), message abc", "line 4"
    line: str | None = None
    error: str | None = None


class Problem(msgspec.Struct, frozen=True, order=True):
    number: int  # the item's place in the source, so problems are reported in order
    where: str
    message: str


class ImportReport(msgspec.Struct, kw_only=True):
    added: int = 0
    already_present: int = 0
    errors: list[Problem] = msgspec.field(default_factory=list)
    written: bool = True  # false when --strict refused the whole file
    agents_without_token: list[str] = msgspec.field(default_factory=list)  # agents added: no token yet


class _Probe(msgspec.Struct):
    type: str | None = None


_decoder = msgspec.json.Decoder(MemoryRecord)
_probe = msgspec.json.Decoder(_Probe)
_encoder = msgspec.json.Encoder()


def stable_id(record: MemoryRecord, cube: str, agent: str, kind: str) -> str:
    """An id for a line that has none: the same line imported twice gets the same id, so it lands once."""
    key = "\x1f".join([cube, agent, kind, record.content, record.occurred_at or ""])
    return "mem_" + hashlib.sha256(key.encode()).hexdigest()[:16]


class _Row(msgspec.Struct):
    record: MemoryRecord
    id: str
    cube: str
    agent: str
    kind: str


def _prepare(line: str, defaults: ImportDefaults, limits: LimitsConfig) -> _Row | SetupRecord:
    try:
        kind_of_line = _probe.decode(line).type
        if kind_of_line is not None:
            if kind_of_line not in RECORD_TYPES[1:]:
                raise InvalidInput(
                    f"type {kind_of_line!r} is not one of: {', '.join(RECORD_TYPES[1:])} (no type: a memory)"
                )
            return check_setup(decode_setup(line))
        record = _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"not a JSON object: {exc}") from None
    agent = record.source_agent or defaults.agent
    kind = record.kind or defaults.kind
    if not agent:
        raise InvalidInput("no agent: give source_agent in the line, or --agent for the whole file")
    if not kind:
        raise InvalidInput(f"no kind: give kind in the line, or --kind ({', '.join(MEMORY_KINDS)})")
    check_name(agent, "source_agent")
    cube = check_cube_ref(record.cube or defaults.cube or private_cube_of(agent))
    checked = check_new_memory(
        NewMemory(
            content=record.content, kind=kind, tags=record.tags, metadata=record.metadata,  # type: ignore[arg-type]
            occurred_at=record.occurred_at, importance=record.importance, expires_at=record.expires_at,
            task_id=record.task_id,
        ),
        limits,
    )  # fmt: skip
    times = {
        name: parse_time(getattr(record, name), name) if getattr(record, name) else None
        for name in ("created_at", "updated_at", "deleted_at", "kept_at", "valid_from", "valid_to")
    }
    links = [
        msgspec.structs.replace(
            link,
            relation=check_relation(link.relation, field="links.relation"),
            created_at=parse_time(link.created_at, "links.created_at") if link.created_at else None,
            created_by=check_name(link.created_by, "links.created_by") if link.created_by else None,
        )
        for link in record.links
    ]
    record = msgspec.structs.replace(
        record, tags=checked.tags, occurred_at=checked.occurred_at, expires_at=checked.expires_at, links=links,
        **times,
    )  # fmt: skip
    memory_id = record.id or stable_id(record, cube, agent, kind)
    for field, value in (
        [("id", memory_id), ("superseded_by", record.superseded_by or "mem_")]
        + [("supersedes", old) for old in record.supersedes]
        + [("links.to", link.to) for link in record.links]
    ):
        if not value.startswith("mem_") or len(value) > 64:
            raise InvalidInput(f"{field} {value!r} is not a memos id (mem_ followed by hex)")
    if memory_id in record.supersedes or memory_id == record.superseded_by:
        raise InvalidInput("a memory cannot supersede itself")
    if any(link.to == memory_id for link in record.links):
        raise InvalidInput("a memory cannot be linked to itself")
    return _Row(record=record, id=memory_id, cube=cube, agent=agent, kind=kind)


async def _cube_id(conn: Connection, row: _Row, cache: dict[str, int]) -> int:
    if row.cube in cache:
        return cache[row.cube]
    found = await conn.value("SELECT id FROM cubes WHERE name = ?", (row.cube,))
    if found is None:
        owner = row.record.cube_owner or (row.cube[1:] if row.cube.startswith("@") else row.agent)
        cube_id = await conn.execute(
            "INSERT INTO cubes (name, owner, description, created_at) VALUES (?, ?, ?, ?)",
            (row.cube, owner, row.record.cube_description or "", now_iso()),
        )
    else:
        cube_id = int(found)
    cache[row.cube] = cube_id
    return cube_id


@dataclass(frozen=True)
class Redaction:
    """What an import needs to mask secrets in the cubes whose `redact_secrets` setting is on."""

    settings: CubeSettingsStore
    redactor: Redactor


async def _redacted(conn: Connection, row: _Row, redaction: Redaction, decided: dict[str, bool]) -> _Row:
    """The row with secrets masked (content, tags, metadata, and the same in every version) where the
    target cube's settings say so; `decided` remembers each cube's setting for one write."""
    if row.cube not in decided:
        decided[row.cube] = bool((await redaction.settings.effective_named(conn, row.cube)).redact_secrets)
    if not decided[row.cube]:
        return row
    r, mask = row.record, redaction.redactor
    history = [
        msgspec.structs.replace(
            v,
            content=mask.text(v.content),
            tags=[mask.text(t) for t in v.tags],
            metadata=mask.value(v.metadata),
        )
        for v in r.history
    ]
    record = msgspec.structs.replace(
        r, content=mask.text(r.content), tags=[mask.text(t) for t in r.tags], metadata=mask.value(r.metadata),
        history=history,
    )  # fmt: skip
    return msgspec.structs.replace(row, record=record)


async def _write_memory(conn: Connection, row: _Row, cubes: dict[str, int]) -> bool:
    """Insert the memory and its versions unless its id is there (True if added). Memories it `supersedes`
    that are here and current are closed at its valid_from, as memory_supersede would."""
    if await conn.row("SELECT 1 FROM memories WHERE id = ?", (row.id,)):
        return False
    r, now = row.record, now_iso()
    created = r.created_at or now
    valid_from = r.valid_from or r.occurred_at or created
    predecessors = []
    for old_id in r.supersedes:
        old = await conn.row("SELECT superseded_by FROM memories WHERE id = ?", (old_id,))
        if old is not None and old["superseded_by"] not in (None, row.id):
            raise InvalidInput(f"supersedes {old_id}, which {old['superseded_by']} superseded already")
        if old is not None and old["superseded_by"] is None:
            predecessors.append(old_id)
    seq = await conn.execute(
        "INSERT INTO memories (id, cube_id, content, kind, tags, metadata, source_agent, task_id, created_at,"
        " updated_at, occurred_at, importance, expires_at, deleted_at, deleted_reason, kept_at, version,"
        " valid_from, valid_to, superseded_by, content_hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.id, await _cube_id(conn, row, cubes), r.content, row.kind, _encoder.encode(r.tags).decode(),
            _encoder.encode(r.metadata).decode(), row.agent, r.task_id, created, r.updated_at or created,
            r.occurred_at, r.importance, r.expires_at, r.deleted_at, r.deleted_reason if r.deleted_at else None,
            r.kept_at, r.version, valid_from, r.valid_to, r.superseded_by, content_hash(r.content),
        ),
    )  # fmt: skip
    await conn.execute_many(
        "INSERT INTO memory_versions (memory_seq, version, content, kind, tags, metadata, importance,"
        " occurred_at, expires_at, updated_at, replaced_at, replaced_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                seq, v.version, v.content, v.kind, _encoder.encode(v.tags).decode(),
                _encoder.encode(v.metadata).decode(), v.importance, v.occurred_at, v.expires_at,
                v.updated_at, v.replaced_at, v.replaced_by,
            )
            for v in r.history
        ],
    )  # fmt: skip
    await index_entities(conn, [seq])
    await conn.execute_many(
        "UPDATE memories SET superseded_by = ?, valid_to = ? WHERE id = ?",
        [(row.id, valid_from, old_id) for old_id in predecessors],
    )
    await conn.execute_many(
        "INSERT OR IGNORE INTO memory_links (from_id, to_id, relation, created_at, created_by)"
        " VALUES (?, ?, ?, ?, ?)",
        [
            (row.id, link.to, link.relation, link.created_at or now, link.created_by or row.agent)
            for link in r.links
        ],
    )
    return True


class _Refused(Exception):
    """Raised inside a strict import's transaction to roll it back when a line fails against the store."""


async def _write(
    conn: Connection,
    items: list[tuple[int, str, _Row | SetupRecord]],
    report: ImportReport,
    who: str,
    strict: bool,
    redaction: Redaction | None,
) -> None:
    """Write each item, or count it as present; an item the store rejects is reported by its line number and
    skipped (nothing of it is written first), or, strict, ends the whole transaction."""
    cubes: dict[str, int] = {}
    decided: dict[str, bool] = {}
    for number, where, item in items:
        try:
            if isinstance(item, _Row):
                if redaction is not None:
                    item = await _redacted(conn, item, redaction, decided)
                added = await _write_memory(conn, item, cubes)
            else:
                added = await write_setup(conn, item)
        except InvalidInput as exc:
            report.errors.append(Problem(number, where, str(exc)))
            if strict:
                raise _Refused from None
            continue
        if added:
            report.added += 1
            if isinstance(item, AgentRecord):
                report.agents_without_token.append(item.name)
        else:
            report.already_present += 1
    if items:
        first = items[0][2]
        target = first.id if isinstance(first, _Row) else None
        cube = first.cube if isinstance(first, _Row) else None
        await conn.execute(
            "INSERT INTO audit (at, agent, action, cube, target, outcome, detail) VALUES (?, ?, 'import', ?, ?, 'ok', ?)",
            (now_iso(), who, cube, target, f"{len(items)} lines"),
        )


async def import_lines(
    store: Store,
    lines: Iterable[str | Located],
    defaults: ImportDefaults,
    limits: LimitsConfig,
    *,
    strict: bool = False,
    who: str = "memos import",
    redaction: Redaction | None = None,
) -> ImportReport:
    """Import JSONL lines (or located items of another source); blank lines are skipped. Good lines are
    written in batches of 500 (strict: all in one transaction, once every line is known good)."""
    report = ImportReport()
    batch: list[tuple[int, str, _Row | SetupRecord]] = []
    for number, item in enumerate(lines, start=1):
        where, line = (f"line {number}", item) if isinstance(item, str) else (item.where, item.line)
        if item_error := (None if isinstance(item, str) else item.error):
            report.errors.append(Problem(number, where, item_error))
            continue
        if not line or not line.strip():
            continue
        try:
            batch.append((number, where, _prepare(line, defaults, limits)))
        except MemosError as exc:
            report.errors.append(Problem(number, where, str(exc)))
            continue
        if len(batch) >= _BATCH and not strict:
            async with store.write() as conn:
                await _write(conn, batch, report, who, strict, redaction)
            batch = []
    if strict and report.errors:
        report.written = False
        return report
    if batch:
        try:
            async with store.write() as conn:
                await _write(conn, batch, report, who, strict, redaction)
        except _Refused:
            report.added = report.already_present = 0
            report.agents_without_token = []
            report.written = False
    report.errors.sort()
    return report


async def export_all(store: Store) -> AsyncIterator[MemoryRecord | SetupRecord]:
    """Cubes, agents, groups, grants and tasks, then every memory: what `memos export --all` writes."""
    async for setup in export_setup(store):
        yield setup
    async for record in export_records(store):
        yield record


async def export_records(store: Store, cubes: list[str] | None = None) -> AsyncIterator[MemoryRecord]:
    """Every memory (deleted ones too) with its history and supersession links, oldest first."""
    last = 0
    while True:
        async with store.read() as conn:
            rows = await conn.rows(
                "SELECT m.seq, m.id, c.name AS cube, c.owner, c.description, m.content, m.kind, m.tags, m.metadata,"
                " m.source_agent, m.task_id, m.created_at, m.updated_at, m.occurred_at, m.importance,"
                " m.expires_at, m.version, m.deleted_at, m.deleted_reason, m.kept_at, m.valid_from, m.valid_to,"
                " m.superseded_by"
                " FROM memories m JOIN cubes c ON c.id = m.cube_id WHERE m.seq > ? ORDER BY m.seq LIMIT ?",
                (last, _BATCH),
            )
            versions: dict[int, list[Version]] = {}
            supersedes: dict[str, list[str]] = {}
            links: dict[str, list[LinkRecord]] = {}
            if rows:
                ids = [r["id"] for r in rows]
                for link in await conn.rows(
                    "SELECT from_id, relation, to_id, created_at, created_by FROM memory_links"
                    f" WHERE from_id IN ({placeholders(len(ids))}) ORDER BY from_id, relation, to_id",
                    ids,
                ):
                    links.setdefault(link["from_id"], []).append(
                        LinkRecord(
                            relation=link["relation"], to=link["to_id"], created_at=link["created_at"],
                            created_by=link["created_by"],
                        )
                    )  # fmt: skip
                for old in await conn.rows(
                    f"SELECT superseded_by, id FROM memories WHERE superseded_by IN ({placeholders(len(ids))})"
                    " ORDER BY seq",
                    ids,
                ):
                    supersedes.setdefault(old["superseded_by"], []).append(old["id"])
                for v in await conn.rows(
                    "SELECT memory_seq, version, content, kind, tags, metadata, importance, occurred_at,"
                    " expires_at, updated_at, replaced_at, replaced_by FROM memory_versions"
                    " WHERE memory_seq BETWEEN ? AND ? ORDER BY memory_seq, version",
                    (rows[0]["seq"], rows[-1]["seq"]),
                ):
                    versions.setdefault(v["memory_seq"], []).append(
                        Version(
                            version=v["version"], content=v["content"], kind=v["kind"],
                            tags=msgspec.json.decode(v["tags"]), metadata=msgspec.json.decode(v["metadata"]),
                            importance=v["importance"], occurred_at=v["occurred_at"], expires_at=v["expires_at"],
                            updated_at=v["updated_at"], replaced_at=v["replaced_at"], replaced_by=v["replaced_by"],
                        )
                    )  # fmt: skip
        if not rows:
            return
        for r in rows:
            last = r["seq"]
            if cubes is not None and r["cube"] not in cubes:
                continue
            yield MemoryRecord(
                id=r["id"], cube=r["cube"], cube_owner=r["owner"], cube_description=r["description"],
                content=r["content"], kind=r["kind"], tags=msgspec.json.decode(r["tags"]),
                metadata=msgspec.json.decode(r["metadata"]), source_agent=r["source_agent"],
                task_id=r["task_id"], created_at=r["created_at"], updated_at=r["updated_at"],
                occurred_at=r["occurred_at"], importance=r["importance"], expires_at=r["expires_at"],
                version=r["version"], deleted_at=r["deleted_at"], deleted_reason=r["deleted_reason"],
                kept_at=r["kept_at"], valid_from=r["valid_from"], valid_to=r["valid_to"],
                superseded_by=r["superseded_by"], supersedes=supersedes.get(r["id"], []),
                history=versions.get(r["seq"], []), links=links.get(r["id"], []),
            )  # fmt: skip


def encode_record(record: MemoryRecord | SetupRecord) -> str:
    return _encoder.encode(record).decode()
