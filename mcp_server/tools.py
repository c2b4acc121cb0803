"""The MCP tools: parse arguments, identify the agent, call the service API, shape the result.

Descriptions are written for the model that calls them: what the tool is for and when to use it. Every tool
has a default scope (writes go to the caller's private cube, reads cover every cube it may read) and every
result names the scope it used.
"""

from typing import Annotated, Any, Literal

import msgspec
from mcp.server.mcpserver.tools import Tool
from pydantic import BaseModel, ConfigDict, Field

from daemon import (
    Cube,
    CubeMembers,
    Memory,
    MemoryChanges,
    MemoryFilter,
    MemoryPage,
    MemoryVersion,
    NewMemory,
    SearchQuery,
    SearchResults,
    Services,
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

Kind = Literal["fact", "preference", "event", "procedure", "note", "message"]
Permission = Literal["read", "write", "share", "admin"]

CubeArg = Annotated[
    str | None,
    Field(description="Cube to write to. Omit to use your own private cube (named @<your agent name>)."),
]
IdArg = Annotated[
    str, Field(description="A memory id such as mem_0123456789abcdef, as returned by other tools.")
]
KindArg = Annotated[
    Kind | None,
    Field(description="fact, preference, event, procedure, note (default) or message (a conversation turn)."),
]
TagsArg = Annotated[
    list[str] | None, Field(description="Short labels to filter by later, e.g. ['project-x'].")
]
MetadataArg = Annotated[dict[str, Any] | None, Field(description="Any JSON object to keep with the memory.")]
WhenArg = Annotated[
    str | None, Field(description="ISO-8601 date or date-time when the remembered thing happened.")
]
ImportanceArg = Annotated[float | None, Field(description="0 (trivial) to 1 (critical); default 0.5.")]
ExpiresArg = Annotated[str | None, Field(description="ISO-8601 date-time after which the memory is hidden.")]
CubesArg = Annotated[
    list[str] | None, Field(description="Cubes to read. Omit to cover every cube you may read.")
]


class CubeList(msgspec.Struct, kw_only=True):
    cubes: list[Cube]
    home_cube: str


class BatchAdded(msgspec.Struct, kw_only=True):
    ids: list[str]
    cube: str
    count: int


class History(msgspec.Struct, kw_only=True):
    id: str
    cube: str
    versions: list[MemoryVersion]


class BatchItem(BaseModel):
    """One memory in a batch."""

    model_config = ConfigDict(extra="forbid")

    content: Annotated[str, Field(description="The text to remember.")]
    kind: KindArg = None
    tags: TagsArg = None
    metadata: MetadataArg = None
    occurred_at: WhenArg = None
    importance: ImportanceArg = None
    expires_at: ExpiresArg = None
    task_id: Annotated[str | None, Field(description="The task this memory belongs to.")] = None


def _new_memory(
    content: str,
    kind: str | None,
    tags: list[str] | None,
    metadata: dict[str, Any] | None,
    occurred_at: str | None,
    importance: float | None,
    expires_at: str | None,
    task_id: str | None,
) -> NewMemory:
    return NewMemory(
        content=content,
        kind=kind or "note",  # type: ignore[arg-type]
        tags=tags or [],
        metadata=metadata or {},
        occurred_at=occurred_at,
        importance=0.5 if importance is None else importance,
        expires_at=expires_at,
        task_id=task_id,
    )


def build_tools(services: Services) -> list[Tool]:
    limits = services.config.limits

    async def cube_list() -> CubeList:
        """List the memory cubes you can read, with their owners and memory counts. Use it to learn which
        cubes exist before writing to or searching a shared one."""
        agent = current_agent()
        return CubeList(cubes=await services.cubes.list(agent), home_cube=agent.home_cube)

    async def cube_create(
        name: Annotated[str, Field(description="1-64 letters, digits, '.', '_' or '-', e.g. team-research.")],
        description: Annotated[str, Field(description="What belongs in this cube.")] = "",
    ) -> Cube:
        """Create a new memory cube that you own, for memories on one topic or to share with others later."""
        return await services.cubes.create(current_agent(), name, description)

    async def cube_share(
        cube: Annotated[str, Field(description="The cube to share (you need share permission on it).")],
        grantee: Annotated[
            str, Field(description="An agent name, 'group:NAME' for a group, or '*' for every agent.")
        ],
        permission: Annotated[
            Permission, Field(description="read < write < share < admin; each includes the ones before it.")
        ],
    ) -> CubeMembers:
        """Give another agent or group access to a cube, at once. Returns the cube's members after the change."""
        return await services.cubes.share(current_agent(), cube, grantee, permission)

    async def cube_unshare(
        cube: Annotated[str, Field(description="The cube.")],
        grantee: Annotated[str, Field(description="The agent, 'group:NAME' or '*' as it was shared with.")],
        permission: Annotated[
            Permission | None, Field(description="Remove only this grant; omit to remove all of theirs.")
        ] = None,
    ) -> CubeMembers:
        """Take back access granted with cube_share (policy-file rules are not changed by this)."""
        return await services.cubes.unshare(current_agent(), cube, grantee, permission)

    async def cube_members(cube: Annotated[str, Field(description="The cube.")]) -> CubeMembers:
        """Who may do what on a cube, and why: its owner, policy-file rules and cube_share grants."""
        return await services.cubes.members(current_agent(), cube)

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
        task_id: Annotated[str | None, Field(description="The task this memory belongs to.")] = None,
    ) -> Memory:
        """Remember one thing: a fact, a user's preference, a decision, an event or a how-to. Returns the new
        memory with its id and the cube it went to."""
        item = _new_memory(content, kind, tags, metadata, occurred_at, importance, expires_at, task_id)
        return await services.memories.add(current_agent(), cube, item)

    async def memory_add_batch(
        items: Annotated[list[BatchItem], Field(description="The memories to add, all or none.")],
        cube: CubeArg = None,
    ) -> BatchAdded:
        """Remember several things at once, atomically: either every item is stored or none is. Use it for a
        conversation or a list of facts."""
        news = [
            _new_memory(
                i.content, i.kind, i.tags, i.metadata, i.occurred_at, i.importance, i.expires_at, i.task_id
            )
            for i in items
        ]
        added = await services.memories.add_batch(current_agent(), cube, news)
        return BatchAdded(ids=[m.id for m in added], cube=added[0].cube, count=len(added))

    async def memory_search(
        query: Annotated[str, Field(description="What you are looking for, in plain words or a question.")],
        cubes: CubesArg = None,
        k: Annotated[int, Field(description=f"How many results, 1-{limits.max_k}.")] = 10,
        kinds: Annotated[list[Kind] | None, Field(description="Only these kinds.")] = None,
        tags: Annotated[list[str] | None, Field(description="Only memories with any of these tags.")] = None,
        since: Annotated[str | None, Field(description="Only memories from this ISO-8601 time on.")] = None,
        until: Annotated[str | None, Field(description="Only memories up to this ISO-8601 time.")] = None,
        source_agent: Annotated[str | None, Field(description="Only memories written by this agent.")] = None,
        mode: Annotated[
            Literal["hybrid", "lexical", "vector"] | None,
            Field(
                description="hybrid (default: words and meaning), lexical (exact words) or vector (meaning)."
            ),
        ] = None,
    ) -> SearchResults:
        """Search memories by meaning and by words. Use it before answering anything that earlier sessions
        or other agents may know: preferences, decisions, facts about people and projects. Results name their
        cube; `mode` says whether meaning was used."""
        return await services.search.search(
            current_agent(),
            SearchQuery(
                query=query,
                cubes=cubes,
                k=k,
                kinds=kinds,
                tags=tags,
                since=since,
                until=until,  # type: ignore[arg-type]
                source_agent=source_agent,
                mode=mode,
            ),
        )

    async def memory_list(
        cubes: CubesArg = None,
        kinds: Annotated[list[Kind] | None, Field(description="Only these kinds.")] = None,
        tags: Annotated[list[str] | None, Field(description="Only memories with any of these tags.")] = None,
        since: Annotated[str | None, Field(description="Only memories from this ISO-8601 time on.")] = None,
        until: Annotated[str | None, Field(description="Only memories up to this ISO-8601 time.")] = None,
        source_agent: Annotated[str | None, Field(description="Only memories written by this agent.")] = None,
        include_deleted: Annotated[bool, Field(description="Also list deleted memories.")] = False,
        limit: Annotated[int, Field(description="Page size, 1-500.")] = 50,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous page.")] = None,
    ) -> MemoryPage:
        """List memories newest first, with filters, a page at a time. Use memory_search to find by topic."""
        where = MemoryFilter.checked(
            limits,
            kinds=kinds,
            tags=tags,
            since=since,
            until=until,
            source_agent=source_agent,  # type: ignore[arg-type]
            include_deleted=include_deleted,
        )
        return await services.memories.list(
            current_agent(), cubes=cubes, where=where, limit=limit, cursor=cursor
        )

    async def memory_get(id: IdArg) -> Memory:
        """Read one memory by id, with all its fields (a deleted one shows deleted_at)."""
        return await services.memories.get(current_agent(), id)

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
    ) -> Memory:
        """Correct or extend a memory. Only the fields you give change; the previous version is kept and
        memory_history shows it."""
        changes = MemoryChanges(
            content=content,
            kind=kind,
            tags=tags,
            metadata=metadata,
            occurred_at=occurred_at,  # type: ignore[arg-type]
            importance=importance,
            expires_at=expires_at,
        )
        return await services.memories.update(current_agent(), id, changes, expected_version)

    async def memory_delete(id: IdArg) -> Memory:
        """Delete a memory that is wrong or no longer wanted. It disappears from search and lists but can be
        brought back with memory_restore."""
        return await services.memories.delete(current_agent(), id)

    async def memory_restore(id: IdArg) -> Memory:
        """Bring back a deleted memory."""
        return await services.memories.restore(current_agent(), id)

    async def memory_history(id: IdArg) -> History:
        """Every version of a memory, oldest first, to see how it changed and who changed it."""
        agent = current_agent()
        versions = await services.memories.history(agent, id)
        memory = await services.memories.get(agent, id)
        return History(id=memory.id, cube=memory.cube, versions=versions)

    return [
        make_tool(cube_list, CubeList, READ_ONLY),
        make_tool(cube_create, Cube, ADDITIVE),
        make_tool(cube_share, CubeMembers, ADDITIVE_IDEMPOTENT),
        make_tool(cube_unshare, CubeMembers, DESTRUCTIVE_IDEMPOTENT),
        make_tool(cube_members, CubeMembers, READ_ONLY),
        make_tool(memory_add, Memory, ADDITIVE),
        make_tool(memory_add_batch, BatchAdded, ADDITIVE),
        make_tool(memory_search, SearchResults, READ_ONLY),
        make_tool(memory_list, MemoryPage, READ_ONLY),
        make_tool(memory_get, Memory, READ_ONLY),
        make_tool(memory_update, Memory, DESTRUCTIVE),
        make_tool(memory_delete, Memory, DESTRUCTIVE_IDEMPOTENT),
        make_tool(memory_restore, Memory, ADDITIVE_IDEMPOTENT),
        make_tool(memory_history, History, READ_ONLY),
    ]
