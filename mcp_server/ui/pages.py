"""The dashboard's pages: each reads through the same service calls as the tools, as the signed-in agent."""

from __future__ import annotations

import difflib
import re
import time
from typing import Any

from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import Response

from daemon import MEMORY_KINDS, InvalidInput, MemoryFilter, MemoryVersion, SearchQuery, storage_facts
from mcp_server.ui.sessions import UiSession
from mcp_server.ui.web import UiContext

PAGE_SIZE = 25
MEMBERS_LISTED = 50  # cubes whose members the cubes page lists
SCAN_LIMIT = 5000  # memories one page of a cube looks through at most (a rare filter pages on)
_WORDS = re.compile(r"\s+|[^\s]+")


def word_diff(old: str, new: str) -> Markup:
    """`new` with the words removed since `old` struck through and the added ones marked."""
    a, b = _WORDS.findall(old), _WORDS.findall(new)
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(str(escape("".join(a[i1:i2]))))
            continue
        if i2 > i1:
            out.append(f"<del>{escape(''.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{escape(''.join(b[j1:j2]))}</ins>")
    return Markup("".join(out))


def _diffs(versions: list[MemoryVersion]) -> list[dict[str, Any]]:
    """Each version with what changed from the one before it (content as a word diff, other fields named)."""
    rows: list[dict[str, Any]] = []
    previous: MemoryVersion | None = None
    for version in versions:
        changed = []
        if previous is not None:
            for field in ("kind", "tags", "importance", "occurred_at", "expires_at", "metadata"):
                if getattr(previous, field) != getattr(version, field):
                    changed.append(f"{field}: {getattr(previous, field)} → {getattr(version, field)}")
        content = word_diff(previous.content, version.content) if previous else escape(version.content)
        rows.append({"version": version, "content": content, "changed": changed})
        previous = version
    return list(reversed(rows))  # newest first


def _arg(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


class Pages:
    def __init__(self, ui: UiContext) -> None:
        self.ui = ui
        self.services = ui.services

    async def cubes(self, request: Request, session: UiSession) -> Response:
        cubes = await self.services.cubes.list(session.acting)
        administered = set(await self.services.cubes.administered(session.acting))
        # Who holds what on each, as cube_members says (the first MEMBERS_LISTED cubes; the rest on their page).
        members = {
            cube.name: (await self.services.cubes.members(session.acting, cube.name)).members
            for cube in cubes[:MEMBERS_LISTED]
        }
        return self.ui.render(
            request, "cubes.html", session, cubes=cubes, administered=administered, members=members,
            live="cubes",
        )  # fmt: skip

    async def cube(self, request: Request, session: UiSession) -> Response:
        agent, name = session.acting, request.path_params["cube"]
        about = await self.services.cubes.describe(agent, name)
        members = await self.services.cubes.members(agent, name)
        show = request.query_params.getlist("show")
        kind = _arg(request, "kind")
        where = MemoryFilter.checked(
            self.services.config.limits,
            kinds=[kind] if kind else None,
            tags=[t for t in [_arg(request, "tag")] if t],
            since=_arg(request, "since"),
            until=_arg(request, "until"),
            source_agent=_arg(request, "agent"),
            include_deleted="deleted" in show,
            include_superseded="superseded" in show,
        )
        page = await self.services.memories.list(
            agent,
            cubes=[name],
            where=where,
            limit=PAGE_SIZE,
            cursor=_arg(request, "cursor"),
            scan_limit=SCAN_LIMIT,
        )
        gone = [m.id for m in page.memories if m.deleted_at]
        reasons = await self.services.memories.deletion_reasons(agent, gone) if gone else {}
        timeline = await self.services.activity.timeline(agent, name)
        pairs = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor" and v]
        return self.ui.render(
            request, "cube.html", session, cube=about, members=members, page=page, timeline=timeline,
            kinds=MEMORY_KINDS, filters=dict(pairs), pairs=pairs, show=show, page_size=PAGE_SIZE,
            scan_limit=SCAN_LIMIT, reasons=reasons, live=f"cube:{name}",
        )  # fmt: skip

    async def memory(self, request: Request, session: UiSession) -> Response:
        agent, memory_id = session.acting, request.path_params["id"]
        memory = await self.services.links.get(agent, memory_id)
        versions = await self.services.memories.history(agent, memory_id)
        supersedes = await self.services.memories.predecessors(agent, memory_id)
        around = await self.services.links.neighbourhood(agent, memory_id)
        shared = await self.services.links.shared_entities(agent, memory_id)
        reasons = (
            await self.services.memories.deletion_reasons(agent, [memory.id]) if memory.deleted_at else {}
        )
        return self.ui.render(
            request, "memory.html", session, memory=memory, versions=_diffs(versions),
            supersedes=supersedes, around=around, shared=shared, kinds=MEMORY_KINDS, reason=reasons.get(memory.id),
            live=f"memory:{memory.id}",
        )  # fmt: skip

    async def search(self, request: Request, session: UiSession) -> Response:
        query, results = _arg(request, "q"), None
        cube, mode = _arg(request, "cube"), _arg(request, "mode")
        if mode not in (None, "hybrid", "lexical", "vector"):  # the tool's argument model checks this
            raise InvalidInput(f"mode {mode!r} is not one of: hybrid, lexical, vector")
        searched_s = 0.0
        if query:
            started = time.perf_counter()
            results = await self.services.search.search(
                session.acting,
                SearchQuery(
                    query=query,
                    cubes=[cube] if cube else None,
                    k=20,
                    mode=mode,  # type: ignore[arg-type]
                    include_superseded=bool(_arg(request, "superseded")),
                ),
            )
            searched_s = time.perf_counter() - started
        # The cube menu: a search over every readable cube has just named them (no second read, which
        # under load would wait for a reader behind the searches); otherwise ask (names only, no counts).
        cubes = (
            results.cubes
            if results is not None and cube is None
            else await self.services.cubes.readable(session.acting)
        )
        response = self.ui.render(
            request, "search.html", session, query=query or "", cube=cube, cubes=cubes, results=results,
            mode=mode or "hybrid",
        )  # fmt: skip
        if query:  # what of the page's server time is memory_search's own (bench/ui.py reports both)
            response.headers["Server-Timing"] = f"search;dur={searched_s * 1000:.1f}"
        return response

    async def tasks(self, request: Request, session: UiSession) -> Response:
        page = await self.services.tasks.list(session.acting, _arg(request, "status"))
        return self.ui.render(request, "tasks.html", session, tasks=page.tasks, live="tasks")

    async def task(self, request: Request, session: UiSession) -> Response:
        task = await self.services.tasks.get(session.acting, request.path_params["id"])
        # The pack is built as its receiver and holds what the receiver may read: only the receiver sees it.
        pack = (
            await self.services.packs.get(session.acting, task.id)
            if task.to_agent == session.acting.name
            else None
        )
        return self.ui.render(request, "task.html", session, task=task, pack=pack, live="tasks")

    async def audit(self, request: Request, session: UiSession) -> Response:
        administered = await self.services.cubes.administered(session.acting)
        cube = _arg(request, "cube")
        scope = [cube] if cube in administered else administered
        entries = await self.services.audit.entries(cubes=scope, agent=_arg(request, "agent"), limit=200)
        return self.ui.render(
            request, "audit.html", session, entries=entries, administered=administered, cube=cube
        )

    async def health(self, request: Request, session: UiSession) -> Response:
        """The daemon's state, without paths or policy contents (those are the owner's: the admin view)."""
        services, config = self.services, self.services.config
        return self.ui.render(
            request, "health.html", session,
            embedder=services.embedder.state, embedder_problem=getattr(services.embedder, "problem", None),
            model=config.embedder.model, storage=storage_facts(config.database_path, config.backup_dir),
            backup_every=config.backup.interval_hours, queues=services.scheduler.snapshot(),
            history=services.metrics.history(), live="health",
        )  # fmt: skip

    async def admin(self, request: Request, session: UiSession) -> Response:
        """The machine owner's view: every cube and who holds what, agents, groups, the audit log and the
        policy in force (with the last rejected change)."""
        services = self.services
        return self.ui.render(
            request, "admin.html", session, cubes=await services.cubes.overview(),
            agents=await services.identities.list(), groups=await services.groups.list(),
            entries=await services.audit.entries(cubes=None, agent=_arg(request, "agent"), limit=200),
            policy=services.access.state,
        )  # fmt: skip
