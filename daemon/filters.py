"""Filters shared by listing and search, rendered as one SQL predicate over `memories m` with bound values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from daemon.config import LimitsConfig
from daemon.errors import InvalidInput
from daemon.store import Connection, placeholders
from daemon.timeutil import now_iso, parse_time
from daemon.validation import check_kind, check_name, check_tags


class MemoryFilter(msgspec.Struct, kw_only=True, frozen=True):
    kinds: list[str] | None = None
    tags: list[str] | None = None  # a memory matches when it has any of them
    since: str | None = None  # on occurred_at, else created_at
    until: str | None = None
    source_agent: str | None = None
    include_deleted: bool = False
    include_superseded: bool = False  # also memories a newer one replaced (marked by superseded_by)
    as_of: str | None = None  # what was true then: valid_from <= as_of < valid_to
    task_id: str | None = None

    @classmethod
    def checked(
        cls,
        limits: LimitsConfig,
        *,
        kinds: Sequence[str] | None = None,
        tags: list[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        source_agent: str | None = None,
        include_deleted: bool = False,
        include_superseded: bool = False,
        as_of: str | None = None,
    ) -> MemoryFilter:
        since_t = parse_time(since, "since") if since else None
        until_t = parse_time(until, "until") if until else None
        if since_t and until_t and since_t > until_t:
            raise InvalidInput(f"since ({since}) is after until ({until})")
        return cls(
            kinds=[check_kind(k, "kinds") for k in kinds] if kinds else None,
            tags=check_tags(tags, limits) if tags else None,
            since=since_t,
            until=until_t,
            source_agent=check_name(source_agent, "source_agent") if source_agent else None,
            include_deleted=include_deleted,
            include_superseded=include_superseded,
            as_of=parse_time(as_of, "as_of") if as_of else None,
        )

    def sql(self) -> tuple[str, list[Any]]:
        """A predicate (starting with AND) and its parameters. Expired memories are always left out;
        superseded ones unless asked for; `as_of` moves "now" for validity and expiry."""
        moment = self.as_of or now_iso()
        clauses = ["AND (m.expires_at IS NULL OR m.expires_at > ?)"]
        params: list[Any] = [moment]
        if self.as_of:
            clauses.append("AND m.valid_from <= ?")
            params.append(self.as_of)
            if not self.include_superseded:
                clauses.append("AND (m.valid_to IS NULL OR m.valid_to > ?)")
                params.append(self.as_of)
        elif not self.include_superseded:
            clauses.append("AND m.superseded_by IS NULL")
        if not self.include_deleted:
            clauses.append("AND m.deleted_at IS NULL")
        if self.kinds:
            clauses.append(f"AND m.kind IN ({', '.join('?' * len(self.kinds))})")
            params += self.kinds
        if self.tags:
            clauses.append(
                f"AND EXISTS (SELECT 1 FROM json_each(m.tags) t WHERE t.value IN ({', '.join('?' * len(self.tags))}))"
            )
            params += self.tags
        if self.since:
            clauses.append("AND coalesce(m.occurred_at, m.created_at) >= ?")
            params.append(self.since)
        if self.until:
            clauses.append("AND coalesce(m.occurred_at, m.created_at) <= ?")
            params.append(self.until)
        if self.task_id:
            clauses.append("AND m.task_id = ?")
            params.append(self.task_id)
        if self.source_agent:
            clauses.append("AND m.source_agent = ?")
            params.append(self.source_agent)
        return " ".join(clauses), params


async def passing(
    conn: Connection, seqs: Sequence[int], predicate: str, params: Sequence[Any], wanted: int
) -> list[int]:
    """The seqs of `seqs` (a ranking, best first) that pass `predicate`, in order: at least the first
    `wanted` that pass (all, if fewer do), perhaps more. Looked up a chunk at a time, a little more than
    `wanted` first: most memories pass, and each one looked up costs a row read."""
    kept: list[int] = []
    start, chunk = 0, wanted + wanted // 4 + 10
    while len(kept) < wanted and start < len(seqs):
        part = list(seqs[start : start + chunk])
        found = await conn.packed_columns(
            f"SELECT m.seq FROM memories m WHERE m.seq IN ({placeholders(len(part))}) {predicate}",
            [*part, *params],
            {"seq": "value"},
        )
        keep = set(found.values["seq"])
        kept += [seq for seq in part if seq in keep]
        start, chunk = start + chunk, chunk * 4
    return kept
