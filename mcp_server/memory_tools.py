"""The memory tools: add, add_batch, supersede, search, list, get, update, delete, restore, history."""

from typing import Annotated, Any, Literal

import msgspec
from mcp.server.mcpserver.tools import Tool
from pydantic import Field

from daemon import (
    AddedMemory,
    BatchAdded,
    LinkedMemory,
    Memory,
    MemoryChanges,
    MemoryFilter,
    MemoryLink,
    MemoryPage,
    MemoryVersion,
    SearchQuery,
    SearchResults,
    Services,
)
from mcp_server.arguments import (
    AsOfArg,
    BatchItem,
    CubeArg,
    CubesArg,
    ExpiresArg,
    IdArg,
    ImportanceArg,
    KeyArg,
    Kind,
    KindArg,
    MetadataArg,
    SupersededArg,
    TagsArg,
    TaskArg,
    WhenArg,
    new_memory,
)
from mcp_server.auth import current_agent
from mcp_server.wire import (
    ADDITIVE,
    ADDITIVE_IDEMPOTENT,
    DESTRUCTIVE,
    DESTRUCTIVE_IDEMPOTENT,
    READ_ONLY,
    make_tool,
)

KindsArg = Annotated[list[Kind] | None, Field(description="Only these kinds.")]
AnyTagArg = Annotated[list[str] | None, Field(description="Only memories with any of these tags.")]
SinceArg = Annotated[str | None, Field(description="Only memories from this ISO-8601 time on.")]
UntilArg = Annotated[str | None, Field(description="Only memories up to this ISO-8601 time.")]
AuthorArg = Annotated[str | None, Field(description="Only memories written by this agent.")]


class History(msgspec.Struct, kw_only=True):
    id: str
    cube: str
    versions: list[MemoryVersion]
    supersedes: list[str]  # the memories this one replaced
    superseded_by: str | None  # the memory that replaced this one
    links: list[MemoryLink] = msgspec.field(default_factory=list)  # readable ends only


def _args(values: dict[str, Any], names: str) -> dict[str, Any]:
    """A call's arguments (the space-separated `names`) for its idempotency fingerprint."""
    return {name: values[name] for name in names.split()}


def build_memory_tools(services: Services) -> list[Tool]:
    limits = services.config.limits

    async def memory_add(
        content: Annotated[
            str, Field(description="The text to remember, self-contained (say who and what).")
        ],
        cube: CubeArg = None,
        kind: KindArg = None,
        tags: TagsArg = None,
        metadata: MetadataArg = None,
        occurred_at: WhenArg = None,
        importance: ImportanceArg = None,
        expires_at: ExpiresArg = None,
        task_id: TaskArg = None,
        supersedes: Annotated[
            list[str] | None,
            Field(description="Ids of memories this one replaces (they stop being current)."),
        ] = None,
        idempotency_key: KeyArg = None,
    ) -> AddedMemory:
        """Remember one thing: a fact, a user's preference, a decision, an event or a how-to. The result has
        the new id and cube, `duplicate` if the same text was already there, and `similar` memories you may
        want to supersede instead."""
        agent, arguments = (
            current_agent(),
            _args(
                locals(),
                "content cube kind tags metadata occurred_at importance expires_at task_id supersedes",
            ),
        )
        item = new_memory(content, kind, tags, metadata, occurred_at, importance, expires_at, task_id)
        return await services.idempotent(
            agent, idempotency_key, "memory_add", arguments, AddedMemory,
            lambda rec: services.additions.add(agent, cube, item, supersedes=supersedes, recorder=rec),
        )  # fmt: skip

    async def memory_supersede(
        id: IdArg,
        content: Annotated[str, Field(description="What is true now, self-contained.")],
        kind: KindArg = None,
        tags: TagsArg = None,
        metadata: MetadataArg = None,
        occurred_at: Annotated[
            str | None, Field(description="ISO-8601 time from which the new memory is true (default: now).")
        ] = None,
        importance: ImportanceArg = None,
        idempotency_key: KeyArg = None,
    ) -> AddedMemory:
        """Replace a memory that is no longer true ("Bob moved from Paris to Berlin"): the new one is stored
        in the same cube, the old one stops being current but stays in history and in as_of searches."""
        agent, arguments = (
            current_agent(),
            _args(locals(), "id content kind tags metadata occurred_at importance"),
        )

        async def write(rec):  # type: ignore[no-untyped-def]
            old = await services.memories.get(agent, id)
            item = new_memory(
                content, kind or old.kind, old.tags if tags is None else tags,
                old.metadata if metadata is None else metadata, occurred_at,
                old.importance if importance is None else importance, None, old.task_id,
            )  # fmt: skip
            return await services.additions.add(agent, old.cube, item, supersedes=[id], recorder=rec)

        return await services.idempotent(
            agent, idempotency_key, "memory_supersede", arguments, AddedMemory, write
        )

    async def memory_add_batch(
        items: Annotated[list[BatchItem], Field(description="The memories to add, all or none.")],
        cube: CubeArg = None,
        idempotency_key: KeyArg = None,
    ) -> BatchAdded:
        """Remember several things at once, atomically: either every item is stored or none is. Use it for a
        conversation or a list of facts."""
        agent, arguments = current_agent(), {"items": [i.model_dump() for i in items], "cube": cube}
        news = [
            new_memory(
                i.content, i.kind, i.tags, i.metadata, i.occurred_at, i.importance, i.expires_at, i.task_id
            )
            for i in items
        ]
        return await services.idempotent(
            agent, idempotency_key, "memory_add_batch", arguments, BatchAdded,
            lambda rec: services.additions.add_batch(agent, cube, news, recorder=rec),
        )  # fmt: skip

    async def memory_search(
        query: Annotated[str, Field(description="What you are looking for, in plain words or a question.")],
        cubes: CubesArg = None,
        k: Annotated[int, Field(description=f"How many results, 1-{limits.max_k}.")] = 10,
        kinds: KindsArg = None,
        tags: AnyTagArg = None,
        since: SinceArg = None,
        until: UntilArg = None,
        source_agent: AuthorArg = None,
        mode: Annotated[
            Literal["hybrid", "lexical", "vector"] | None,
            Field(
                description="hybrid (default: words and meaning), lexical (exact words) or vector (meaning)."
            ),
        ] = None,
        include_superseded: SupersededArg = False,
        as_of: AsOfArg = None,
        queries: Annotated[
            list[str] | None,
            Field(description="Up to 4 more phrasings of the same need (synonyms, likely wording); fused."),
        ] = None,
        reference_time: Annotated[
            str | None,
            Field(
                description='ISO-8601 time that "last week" or "in May" in the query count from (default as_of, else now).'
            ),
        ] = None,
        context_window: Annotated[
            int,
            Field(description="Also return this many neighbouring turns (0-5) of each conversation result."),
        ] = 0,
    ) -> SearchResults:
        """Search memories by meaning and by words. Use it before answering anything that earlier sessions
        or other agents may know: preferences, decisions, facts about people and projects. Only what is true
        now is returned unless you ask for as_of or include_superseded. Each result says why it matched."""
        return await services.search.search(
            current_agent(),
            SearchQuery(
                query=query, cubes=cubes, k=k, kinds=kinds, tags=tags, since=since, until=until,  # type: ignore[arg-type]
                source_agent=source_agent, mode=mode, include_superseded=include_superseded, as_of=as_of,
                queries=queries, reference_time=reference_time, context_window=context_window,
            ),
        )  # fmt: skip

    async def memory_list(
        cubes: CubesArg = None,
        kinds: KindsArg = None,
        tags: AnyTagArg = None,
        since: SinceArg = None,
        until: UntilArg = None,
        source_agent: AuthorArg = None,
        include_deleted: Annotated[
            bool, Field(description="Also list deleted and archived memories.")
        ] = False,
        include_superseded: SupersededArg = False,
        as_of: AsOfArg = None,
        limit: Annotated[int, Field(description="Page size, 1-500.")] = 50,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous page.")] = None,
    ) -> MemoryPage:
        """List memories newest first, with filters, a page at a time. Use memory_search to find by topic."""
        where = MemoryFilter.checked(
            limits, kinds=kinds, tags=tags, since=since, until=until, source_agent=source_agent,
            include_deleted=include_deleted, include_superseded=include_superseded, as_of=as_of,
        )  # fmt: skip
        return await services.memories.list(
            current_agent(), cubes=cubes, where=where, limit=limit, cursor=cursor
        )

    async def memory_get(id: IdArg) -> LinkedMemory:
        """Read one memory by id, with all its fields (a deleted one shows deleted_at, a replaced one
        superseded_by), its links and its entities (the names, numbers, dates and titles it mentions)."""
        return await services.links.get(current_agent(), id)

    async def memory_update(
        id: IdArg,
        content: Annotated[str | None, Field(description="New text.")] = None,
        kind: KindArg = None,
        tags: Annotated[list[str] | None, Field(description="New tags (replace the old ones).")] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="New metadata (replaces the old).")
        ] = None,
        occurred_at: WhenArg = None,
        importance: ImportanceArg = None,
        expires_at: ExpiresArg = None,
        expected_version: Annotated[
            int | None, Field(description="Refuse the update if the memory is no longer at this version.")
        ] = None,
        idempotency_key: KeyArg = None,
    ) -> Memory:
        """Correct a memory (a typo, a missing detail). Only the fields you give change; the previous version is
        kept in memory_history. When the fact itself changed, use memory_supersede instead."""
        agent, arguments = (
            current_agent(),
            _args(
                locals(), "id content kind tags metadata occurred_at importance expires_at expected_version"
            ),
        )
        changes = MemoryChanges(
            content=content, kind=kind, tags=tags, metadata=metadata, occurred_at=occurred_at,  # type: ignore[arg-type]
            importance=importance, expires_at=expires_at,
        )  # fmt: skip
        return await services.idempotent(
            agent, idempotency_key, "memory_update", arguments, Memory,
            lambda rec: services.memories.update(agent, id, changes, expected_version, recorder=rec),
        )  # fmt: skip

    async def memory_delete(id: IdArg, idempotency_key: KeyArg = None) -> Memory:
        """Delete a memory that is wrong or no longer wanted. It disappears from search and lists but can be
        brought back with memory_restore."""
        agent = current_agent()
        return await services.idempotent(
            agent, idempotency_key, "memory_delete", [id], Memory,
            lambda rec: services.memories.delete(agent, id, recorder=rec),
        )  # fmt: skip

    async def memory_restore(id: IdArg, idempotency_key: KeyArg = None) -> Memory:
        """Bring back a deleted or archived memory."""
        agent = current_agent()
        return await services.idempotent(
            agent, idempotency_key, "memory_restore", [id], Memory,
            lambda rec: services.memories.restore(agent, id, recorder=rec),
        )  # fmt: skip

    async def memory_history(id: IdArg) -> History:
        """Every version of a memory, oldest first, and what it replaced or was replaced by."""
        agent = current_agent()
        versions = await services.memories.history(agent, id)
        memory = await services.memories.get(agent, id)
        supersedes = await services.memories.predecessors(agent, id)
        return History(
            id=memory.id, cube=memory.cube, versions=versions, supersedes=supersedes,
            superseded_by=memory.superseded_by, links=await services.links.links_of(agent, id),
        )  # fmt: skip

    return [
        make_tool(memory_add, AddedMemory, ADDITIVE),
        make_tool(memory_add_batch, BatchAdded, ADDITIVE),
        make_tool(memory_supersede, AddedMemory, ADDITIVE),
        make_tool(memory_search, SearchResults, READ_ONLY),
        make_tool(memory_list, MemoryPage, READ_ONLY),
        make_tool(memory_get, LinkedMemory, READ_ONLY),
        make_tool(memory_update, Memory, DESTRUCTIVE),
        make_tool(memory_delete, Memory, DESTRUCTIVE_IDEMPOTENT),
        make_tool(memory_restore, Memory, ADDITIVE_IDEMPOTENT),
        make_tool(memory_history, History, READ_ONLY),
    ]
