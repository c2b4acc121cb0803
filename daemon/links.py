"""Links: typed, directed relations between memories ("this decision is about that project").

A link is stored once, in `memory_links`, as (from, to, relation). Supersession is not stored here: it stays
in `memories.superseded_by` and is shown beside the links as the relation `supersedes`. Every read filters by
the reader's access at read time, every time: a link is shown only when the reader may read both of its ends,
and never while either end is deleted. Linking needs write on the `from` memory's cube and read on the `to`
memory; a `to` the caller may not read is "not found", exactly like a missing one. Unlinking needs only
write on the `from` memory, so a link whose `to` was deleted, or whose cube the caller may no longer read, can
still be removed; its answer then names no cube for that end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from daemon.audit import Audit
from daemon.entities import entities_of_memory, frequencies
from daemon.errors import Conflict, InvalidInput, NotFound, shown
from daemon.events import ChangeHub, MemoryChanged
from daemon.idempotency import Recorder
from daemon.memories import Memories, check_memory_id
from daemon.models import Agent, Memory
from daemon.policy import AccessPolicy
from daemon.policy_rules import LEVEL
from daemon.rows import Row
from daemon.store import Connection, Store, placeholders
from daemon.timeutil import now_iso

RELATIONS: tuple[str, ...] = ("about", "derived_from", "part_of", "follows", "contradicts", "relates_to")
SUPERSEDES = "supersedes"  # shown beside the links, read from memories.superseded_by
MAX_DEPTH = 2
MAX_NODES = 200  # a neighbourhood stops growing here (a hub at depth 1 would otherwise bring thousands)
SHARED_LISTED = 200  # an entity held by more memories than this is shown with its count only


class _Wire(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class MemoryLink(_Wire):
    """One link as seen from a memory: `out` points from it to `id`, `in` from `id` to it."""

    relation: str
    direction: Literal["out", "in"]
    id: str
    cube: str


class LinkedMemory(Memory, kw_only=True):
    """A memory with its links (only those whose other end the reader may read)."""

    links: list[MemoryLink] = msgspec.field(default_factory=list)
    entities: list[str] = msgspec.field(default_factory=list)  # names, numbers, dates, titles it mentions


class LinkChange(_Wire):
    """What memory_link or memory_unlink did: the two ends (with their cubes) and the relations it added
    or removed (empty when there was nothing to do)."""

    from_id: str
    from_cube: str
    to_id: str
    # None only from memory_unlink, for a `to` that is gone or that the caller may not read.
    to_cube: str | None
    linked: list[str] = msgspec.field(default_factory=list)
    unlinked: list[str] = msgspec.field(default_factory=list)


class Edge(_Wire):
    from_id: str
    from_cube: str
    relation: str
    to_id: str
    to_cube: str


class Node(_Wire):
    id: str
    cube: str
    kind: str
    content: str
    depth: int  # links followed from the centre


class Neighbourhood(_Wire):
    """A memory and what is linked to it up to `depth` links away, readable ends only."""

    id: str
    cube: str
    depth: int
    nodes: list[Node]
    links: list[Edge]
    truncated: bool = False  # more memories are within reach than MAX_NODES


class SharedEntity(_Wire):
    """An entity a memory mentions and other memories the reader may read mention too."""

    entity: str
    holders: int  # memories of the reader's cubes that mention it, this one included
    memories: list[Node]  # the newest few of the others (none listed when holders > SHARED_LISTED)


def check_relation(relation: str, *, field: str = "relation") -> str:
    if relation not in RELATIONS:
        hint = " (supersession is made with memory_supersede)" if relation == SUPERSEDES else ""
        raise InvalidInput(f"{field}: {shown(relation)} is not one of: {', '.join(RELATIONS)}{hint}")
    return relation


# Both directions of both kinds of relation touching any of the given ids, with each end's cube; ends that
# are deleted are left out. `?` stands for the id list, repeated for each branch.
_EDGES = """
SELECT l.from_id, f.cube_id AS from_cube_id, cf.name AS from_cube, l.relation, l.to_id,
       t.cube_id AS to_cube_id, ct.name AS to_cube
FROM memory_links l
JOIN memories f ON f.id = l.from_id JOIN cubes cf ON cf.id = f.cube_id
JOIN memories t ON t.id = l.to_id JOIN cubes ct ON ct.id = t.cube_id
WHERE l.{side} IN ({ids}) AND f.deleted_at IS NULL AND t.deleted_at IS NULL
"""
_SUCCESSIONS = """
SELECT n.id AS from_id, n.cube_id AS from_cube_id, cn.name AS from_cube, 'supersedes' AS relation,
       o.id AS to_id, o.cube_id AS to_cube_id, co.name AS to_cube
FROM memories o
JOIN memories n ON n.id = o.superseded_by JOIN cubes cn ON cn.id = n.cube_id
JOIN cubes co ON co.id = o.cube_id
WHERE o.{side} IN ({ids}) AND o.deleted_at IS NULL AND n.deleted_at IS NULL
"""


class Links:
    def __init__(self, store: Store, access: AccessPolicy, memories: Memories, hub: ChangeHub) -> None:
        self._store = store
        self._access = access
        self._memories = memories
        self._hub = hub

    async def link(
        self, agent: Agent, from_id: str, to_id: str, relation: str, recorder: Recorder | None = None
    ) -> LinkChange:
        """Link `from_id` to `to_id`; linking the same triple again changes nothing."""
        from_id, to_id = _check_ends(from_id, to_id)
        relation = check_relation(relation)
        async with self._store.write() as conn:
            source, target = await self._ends(conn, agent, from_id, to_id, "memory_link")
            for row in (source, target):
                if row["deleted_at"] is not None:
                    raise Conflict(f"memory {row['id']} is deleted; memory_restore it before linking it")
            exists = await conn.row(
                "SELECT 1 FROM memory_links WHERE from_id = ? AND to_id = ? AND relation = ?",
                (from_id, to_id, relation),
            )
            if not exists:
                await conn.execute(
                    "INSERT INTO memory_links (from_id, to_id, relation, created_at, created_by)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (from_id, to_id, relation, now_iso(), agent.name),
                )
                await Audit.record(
                    conn, agent.name, "memory_link", source["cube"], from_id, f"{relation} {to_id}"
                )
            result = LinkChange(
                from_id=from_id, from_cube=source["cube"], to_id=to_id, to_cube=target["cube"],
                linked=[] if exists else [relation],
            )  # fmt: skip
            await self._finish(conn, result, recorder, target["cube"])
        return result

    async def unlink(
        self,
        agent: Agent,
        from_id: str,
        to_id: str,
        relation: str | None = None,
        recorder: Recorder | None = None,
    ) -> LinkChange:
        """Remove the link(s) from `from_id` to `to_id` (every relation if none is named); removing what is
        not there changes nothing. Only write on `from_id` is needed: a link outlives its `to` end's access
        (a deleted memory, a cube no longer shared) and its owner must still be able to remove it. A `to` the
        caller may not read is never described: its cube is left out, and with no link to it the answer is
        "not found", exactly as for a missing id."""
        from_id, to_id = _check_ends(from_id, to_id)
        if relation is not None:
            relation = check_relation(relation)
        async with self._store.write() as conn:
            source = await self._memories.row(conn, agent, from_id, "write", "memory_unlink")
            target = await conn.row(
                "SELECT m.cube_id, c.name AS cube FROM memories m JOIN cubes c ON c.id = m.cube_id WHERE m.id = ?",
                (to_id,),
            )
            readable = target is not None and (
                await self._access.level_of(conn, agent, target["cube_id"]) >= LEVEL["read"]
            )
            rows = await conn.rows(
                "SELECT relation FROM memory_links WHERE from_id = ? AND to_id = ?"
                + (" AND relation = ?" if relation else "")
                + " ORDER BY relation",
                (from_id, to_id, relation) if relation else (from_id, to_id),
            )
            removed = [row["relation"] for row in rows]
            if not readable and not await conn.row(
                "SELECT 1 FROM memory_links WHERE from_id = ? AND to_id = ?", (from_id, to_id)
            ):
                if target is not None:  # audited as a denial, answered as a missing id
                    await self._access.check_memory(
                        conn, agent, target["cube_id"], target["cube"], to_id, "read", "memory_unlink"
                    )
                raise NotFound(f"no memory with id {to_id!r} that you can read; memory_search finds ids")
            if removed:
                await conn.execute_many(
                    "DELETE FROM memory_links WHERE from_id = ? AND to_id = ? AND relation = ?",
                    [(from_id, to_id, r) for r in removed],
                )
                await Audit.record(
                    conn, agent.name, "memory_unlink", source["cube"], from_id, f"{','.join(removed)} {to_id}"
                )
            result = LinkChange(
                from_id=from_id,
                from_cube=source["cube"],
                to_id=to_id,
                to_cube=target["cube"] if readable and target is not None else None,
                unlinked=removed,
            )
            await self._finish(conn, result, recorder, target["cube"] if target is not None else None)
        return result

    async def get(self, agent: Agent, memory_id: str) -> LinkedMemory:
        """The memory, as `Memories.get` reads it, with its links."""
        memory = await self._memories.get(agent, memory_id)
        links = await self.links_of(agent, memory.id)
        async with self._store.read() as conn:
            entities = await entities_of_memory(conn, memory.id)
        return LinkedMemory(**msgspec.structs.asdict(memory), links=links, entities=entities)

    async def shared_entities(self, agent: Agent, memory_id: str, per_entity: int = 5) -> list[SharedEntity]:
        """The other side of a memory's neighbourhood: memories that mention the same names, numbers, dates
        or titles (daemon/entities.py), in cubes the agent may read; rarest entity first, live memories only."""
        memory_id = check_memory_id(memory_id)
        async with self._store.read() as conn:
            await self._memories.row(conn, agent, memory_id, "read", "memory_neighbourhood")
            entities = await entities_of_memory(conn, memory_id)
            cube_ids = [ref.id for ref in await self._access.readable_cubes(conn, agent)]
            counts = await frequencies(conn, cube_ids, entities)
            shared = []
            for entity in sorted(entities, key=lambda e: (counts.get(e, 0), e)):
                holders = counts.get(entity, 0)
                if holders < 2:
                    continue
                rows = (
                    await conn.rows(
                        "SELECT m.id, c.name AS cube, m.kind, m.content FROM memory_entities e"
                        " JOIN memories m ON m.seq = e.seq JOIN cubes c ON c.id = m.cube_id"
                        f" WHERE e.cube_id IN ({placeholders(len(cube_ids))}) AND e.entity = ? AND m.id != ?"
                        " AND m.deleted_at IS NULL ORDER BY e.seq DESC LIMIT ?",
                        [*cube_ids, entity, memory_id, per_entity],
                    )
                    if holders <= SHARED_LISTED
                    else []
                )
                nodes = [
                    Node(id=r["id"], cube=r["cube"], kind=r["kind"], content=r["content"], depth=1)
                    for r in rows
                ]
                shared.append(SharedEntity(entity=entity, holders=holders, memories=nodes))
        return shared

    async def links_of(self, agent: Agent, memory_id: str) -> list[MemoryLink]:
        """The memory's links (and supersessions) whose other end the agent may read: outgoing first."""
        memory_id = check_memory_id(memory_id)
        async with self._store.read() as conn:
            await self._memories.row(conn, agent, memory_id, "read", "memory_links")
            edges = await self._readable_edges(conn, agent, [memory_id])
        links = [
            MemoryLink(relation=e.relation, direction="out", id=e.to_id, cube=e.to_cube)
            if e.from_id == memory_id
            else MemoryLink(relation=e.relation, direction="in", id=e.from_id, cube=e.from_cube)
            for e in edges
        ]
        return sorted(links, key=lambda link: (link.direction != "out", link.relation, link.id))

    async def neighbourhood(self, agent: Agent, memory_id: str, depth: int = MAX_DEPTH) -> Neighbourhood:
        """The memory and every memory up to `depth` (1-2) links away (at most MAX_NODES, nearest first), with
        the links between them; only memories the agent may read, and none that is deleted."""
        memory_id = check_memory_id(memory_id)
        if not 1 <= depth <= MAX_DEPTH:
            raise InvalidInput(f"depth must be from 1 to {MAX_DEPTH}, got {depth}")
        async with self._store.read() as conn:
            centre = await self._memories.row(conn, agent, memory_id, "read", "memory_neighbourhood")
            reached, truncated = {memory_id: 0}, False
            edges: dict[tuple[str, str, str], Edge] = {}
            frontier = [memory_id] if centre["deleted_at"] is None else []
            for hop in range(1, depth + 1):
                if not frontier:
                    break
                found = await self._readable_edges(conn, agent, frontier)
                frontier = []
                for edge in sorted(found, key=lambda e: (e.relation, e.from_id, e.to_id)):
                    for end in (edge.from_id, edge.to_id):
                        if end in reached:
                            continue
                        if len(reached) >= MAX_NODES:
                            truncated = True
                            break
                        reached[end] = hop
                        frontier.append(end)
                    if edge.from_id in reached and edge.to_id in reached:
                        edges[(edge.from_id, edge.relation, edge.to_id)] = edge
            rows = await conn.rows(
                f"SELECT m.id, c.name AS cube, m.kind, m.content FROM memories m JOIN cubes c ON c.id = m.cube_id"
                f" WHERE m.id IN ({placeholders(len(reached))})",
                list(reached),
            )
        nodes = sorted(
            (
                Node(id=r["id"], cube=r["cube"], kind=r["kind"], content=r["content"], depth=reached[r["id"]])
                for r in rows
            ),
            key=lambda node: (node.depth, node.id),
        )
        return Neighbourhood(
            id=memory_id,
            cube=centre["cube"],
            depth=depth,
            nodes=nodes,
            links=sorted(edges.values(), key=lambda e: (e.from_id, e.relation, e.to_id)),
            truncated=truncated,
        )

    async def _ends(
        self, conn: Connection, agent: Agent, from_id: str, to_id: str, action: str
    ) -> tuple[Row, Row]:
        source = await self._memories.row(conn, agent, from_id, "write", action)
        target = await self._memories.row(conn, agent, to_id, "read", action)
        return source, target

    async def _finish(
        self, conn: Connection, result: LinkChange, recorder: Recorder | None, to_cube: str | None
    ) -> None:
        """Record the answer for its idempotency key; after the commit, tell subscribers of either end
        (`to_cube` is the `to` end's real cube, which the answer may leave out; None if it is gone)."""
        if recorder is not None:
            await recorder.record(conn, result)
        if result.linked or result.unlinked:
            changes = [MemoryChanged(result.from_cube, result.from_id)]
            if to_cube is not None:
                changes.append(MemoryChanged(to_cube, result.to_id))

            def publish() -> None:  # subscribers of either memory hear of its changed links
                for change in changes:
                    self._hub.publish(change)

            conn.after_commit(publish)

    async def _readable_edges(self, conn: Connection, agent: Agent, ids: Sequence[str]) -> list[Edge]:
        marks = placeholders(len(ids))
        sql = " UNION ".join(
            template.format(side=side, ids=marks)
            for template, sides in ((_EDGES, ("from_id", "to_id")), (_SUCCESSIONS, ("id", "superseded_by")))
            for side in sides
        )
        rows = await conn.rows(sql, list(ids) * 4)
        cubes = {r["from_cube_id"] for r in rows} | {r["to_cube_id"] for r in rows}
        levels = await self._access.levels(conn, agent, sorted(cubes))
        return [
            Edge(
                from_id=r["from_id"],
                from_cube=r["from_cube"],
                relation=r["relation"],
                to_id=r["to_id"],
                to_cube=r["to_cube"],
            )
            for r in rows
            if r["from_cube_id"] in levels and r["to_cube_id"] in levels
        ]


def _check_ends(from_id: str, to_id: str) -> tuple[str, str]:
    from_id, to_id = check_memory_id(from_id, "from_id"), check_memory_id(to_id, "to_id")
    if from_id == to_id:
        raise InvalidInput(f"from_id and to_id are both {from_id}: a memory cannot be linked to itself")
    return from_id, to_id
