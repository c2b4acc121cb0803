"""Moving memories in and out: JSONL export with every field and the whole history, and an import that is
idempotent, validates every line, and reports bad lines by number (or, strict, writes nothing).

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
from daemon.errors import InvalidInput, MemosError
from daemon.models import MEMORY_KINDS, NewMemory
from daemon.redaction import Redactor
from daemon.settings_store import CubeSettingsStore
from daemon.store import Connection, Store
from daemon.timeutil import now_iso, parse_time
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
    history: list[Version] = msgspec.field(default_factory=list)


class ImportDefaults(msgspec.Struct, kw_only=True):
    agent: str | None = None
    kind: str | None = None
    cube: str | None = None


class ImportReport(msgspec.Struct, kw_only=True):
    added: int = 0
    already_present: int = 0
    errors: list[tuple[int, str]] = msgspec.field(default_factory=list)  # (line number, message)
    written: bool = True  # false when --strict refused the whole file


_decoder = msgspec.json.Decoder(MemoryRecord)
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


def _prepare(line: str, defaults: ImportDefaults, limits: LimitsConfig) -> _Row:
    try:
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
        for name in ("created_at", "updated_at", "deleted_at")
    }
    record = msgspec.structs.replace(
        record, tags=checked.tags, occurred_at=checked.occurred_at, expires_at=checked.expires_at, **times
    )
    memory_id = record.id or stable_id(record, cube, agent, kind)
    if not memory_id.startswith("mem_") or len(memory_id) > 64:
        raise InvalidInput(f"id {memory_id!r} is not a memos id (mem_ followed by hex)")
    return _Row(record=record, id=memory_id, cube=cube, agent=agent, kind=kind)


async def _cube_id(conn: Connection, row: _Row, cache: dict[str, int]) -> int:
    if row.cube in cache:
        return cache[row.cube]
    found = await conn.fetch_one("SELECT id FROM cubes WHERE name = ?", (row.cube,))
    if found is None:
        owner = row.record.cube_owner or (row.cube[1:] if row.cube.startswith("@") else row.agent)
        cube_id = await conn.execute(
            "INSERT INTO cubes (name, owner, description, created_at) VALUES (?, ?, ?, ?)",
            (row.cube, owner, row.record.cube_description or "", now_iso()),
        )
    else:
        cube_id = int(found[0])
    cache[row.cube] = cube_id
    return cube_id


@dataclass(frozen=True)
class Redaction:
    """What an import needs to mask secrets in the cubes whose `redact_secrets` setting is on."""

    settings: CubeSettingsStore
    redactor: Redactor


async def _redacted(conn: Connection, rows: list[_Row], redaction: Redaction) -> list[_Row]:
    """The rows with secrets masked (content, tags, metadata, and the same in every version) where the
    target cube's settings say so."""
    decided: dict[str, bool] = {}
    out = []
    for row in rows:
        if row.cube not in decided:
            decided[row.cube] = bool(
                (await redaction.settings.effective_named(conn, row.cube)).redact_secrets
            )
        if not decided[row.cube]:
            out.append(row)
            continue
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
        out.append(msgspec.structs.replace(row, record=record))
    return out


async def _write(
    conn: Connection, rows: list[_Row], report: ImportReport, who: str, redaction: Redaction | None
) -> None:
    cubes: dict[str, int] = {}
    if redaction is not None:
        rows = await _redacted(conn, rows, redaction)
    for row in rows:
        if await conn.fetch_one("SELECT 1 FROM memories WHERE id = ?", (row.id,)):
            report.already_present += 1
            continue
        r, now = row.record, now_iso()
        seq = await conn.execute(
            "INSERT INTO memories (id, cube_id, content, kind, tags, metadata, source_agent, task_id,"
            " created_at, updated_at, occurred_at, importance, expires_at, deleted_at, version)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.id, await _cube_id(conn, row, cubes), r.content, row.kind, _encoder.encode(r.tags).decode(),
                _encoder.encode(r.metadata).decode(), row.agent, r.task_id, r.created_at or now,
                r.updated_at or r.created_at or now, r.occurred_at, r.importance, r.expires_at, r.deleted_at,
                r.version,
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
        report.added += 1
    if rows:
        await conn.execute(
            "INSERT INTO audit (at, agent, action, cube, target, outcome, detail) VALUES (?, ?, 'import', ?, ?, 'ok', ?)",
            (now_iso(), who, rows[0].cube, rows[0].id, f"{len(rows)} lines"),
        )


async def import_lines(
    store: Store,
    lines: Iterable[str],
    defaults: ImportDefaults,
    limits: LimitsConfig,
    *,
    strict: bool = False,
    who: str = "memos import",
    redaction: Redaction | None = None,
) -> ImportReport:
    """Import JSONL lines; blank lines are skipped. Good lines are written in batches of 500."""
    report = ImportReport()
    batch: list[_Row] = []
    held: list[_Row] = []  # strict: everything waits until the whole file is known good
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = _prepare(line, defaults, limits)
        except MemosError as exc:
            report.errors.append((number, str(exc)))
            continue
        (held if strict else batch).append(row)
        if len(batch) >= _BATCH:
            async with store.write() as conn:
                await _write(conn, batch, report, who, redaction)
            batch = []
    if strict:
        if report.errors:
            report.written = False
            return report
        batch = held
    if batch:
        async with store.write() as conn:
            await _write(conn, batch, report, who, redaction)
    return report


async def export_records(store: Store, cubes: list[str] | None = None) -> AsyncIterator[MemoryRecord]:
    """Every memory (deleted ones too) with its history, oldest first."""
    last = 0
    while True:
        async with store.read() as conn:
            rows = await conn.fetch_all(
                "SELECT m.seq, m.id, c.name, c.owner, c.description, m.content, m.kind, m.tags, m.metadata,"
                " m.source_agent, m.task_id, m.created_at, m.updated_at, m.occurred_at, m.importance,"
                " m.expires_at, m.version, m.deleted_at"
                " FROM memories m JOIN cubes c ON c.id = m.cube_id WHERE m.seq > ? ORDER BY m.seq LIMIT ?",
                (last, _BATCH),
            )
            versions: dict[int, list[Version]] = {}
            if rows:
                for v in await conn.fetch_all(
                    "SELECT memory_seq, version, content, kind, tags, metadata, importance, occurred_at,"
                    " expires_at, updated_at, replaced_at, replaced_by FROM memory_versions"
                    " WHERE memory_seq BETWEEN ? AND ? ORDER BY memory_seq, version",
                    (rows[0][0], rows[-1][0]),
                ):
                    versions.setdefault(v[0], []).append(
                        Version(
                            version=v[1], content=v[2], kind=v[3], tags=msgspec.json.decode(v[4]),
                            metadata=msgspec.json.decode(v[5]), importance=v[6], occurred_at=v[7],
                            expires_at=v[8], updated_at=v[9], replaced_at=v[10], replaced_by=v[11],
                        )
                    )  # fmt: skip
        if not rows:
            return
        for r in rows:
            last = r[0]
            if cubes is not None and r[2] not in cubes:
                continue
            yield MemoryRecord(
                id=r[1], cube=r[2], cube_owner=r[3], cube_description=r[4], content=r[5], kind=r[6],
                tags=msgspec.json.decode(r[7]), metadata=msgspec.json.decode(r[8]), source_agent=r[9],
                task_id=r[10], created_at=r[11], updated_at=r[12], occurred_at=r[13], importance=r[14],
                expires_at=r[15], version=r[16], deleted_at=r[17], history=versions.get(r[0], []),
            )  # fmt: skip


def encode_record(record: MemoryRecord) -> str:
    return _encoder.encode(record).decode()
