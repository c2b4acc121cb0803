"""The typed values that cross the service API: what the MCP layer and the CLI receive and send."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from daemon.temporal import TimeWindow

MemoryKind = Literal["fact", "preference", "event", "procedure", "note", "message"]
MEMORY_KINDS: tuple[str, ...] = ("fact", "preference", "event", "procedure", "note", "message")
SearchMode = Literal["hybrid", "lexical", "vector"]


class _Wire(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class Agent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """An authenticated caller. Identity comes only from its bearer token."""

    name: str
    home_cube: str


class AgentInfo(_Wire):
    name: str
    created_at: str
    last_seen_at: str | None = None
    disabled: bool = False


class Cube(_Wire):
    name: str
    owner: str
    description: str
    created_at: str
    memory_count: int = 0


class Member(_Wire):
    """One line of a cube's membership: who, which permission, allowed or denied, and where it comes from."""

    grantee: str  # an agent, "group:NAME" or "*"
    permission: str
    effect: str  # "allow" or "deny"
    source: str  # "owner", "team.toml rule 2", "cube_share by alice"


class CubeMembers(_Wire):
    cube: str
    owner: str
    members: list[Member]


class NewMemory(_Wire):
    """One memory to add; validated by the memory service."""

    content: str
    kind: MemoryKind = "note"
    tags: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    occurred_at: str | None = None
    importance: float = 0.5
    expires_at: str | None = None
    task_id: str | None = None


class MemoryChanges(_Wire):
    """A partial update: only the fields given change."""

    content: str | None = None
    kind: MemoryKind | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    occurred_at: str | None = None
    importance: float | None = None
    expires_at: str | None = None


class Memory(_Wire):
    id: str
    cube: str
    content: str
    kind: str
    tags: list[str]
    metadata: dict[str, Any]
    source_agent: str
    task_id: str | None
    created_at: str
    updated_at: str
    occurred_at: str | None
    importance: float
    expires_at: str | None
    version: int
    deleted_at: str | None = None
    valid_from: str | None = None  # when it became true: occurred_at, else when it was recorded
    valid_to: str | None = None  # when a newer memory superseded it; open while it is current
    superseded_by: str | None = None


class Similar(_Wire):
    """A memory already in the cube that reads much like a new one: perhaps supersede it."""

    id: str
    cube: str
    content: str
    score: float


class AddedMemory(Memory, kw_only=True):
    """The result of an add: the memory, and what the agent may want to act on."""

    duplicate: bool = False  # an identical current memory existed: this is it, nothing was stored
    similar: list[Similar] = msgspec.field(default_factory=list)
    superseded: list[str] = msgspec.field(default_factory=list)


class BatchAdded(_Wire):
    ids: list[str]
    cube: str
    count: int
    duplicates: list[str] = msgspec.field(default_factory=list)  # ids that existed already


class MemoryVersion(_Wire):
    version: int
    content: str
    kind: str
    tags: list[str]
    metadata: dict[str, Any]
    importance: float
    occurred_at: str | None
    expires_at: str | None
    updated_at: str
    current: bool
    replaced_at: str | None = None
    replaced_by: str | None = None


class MatchInfo(_Wire):
    """Why a result matched: its rank in each signal that found it (1 = best), the query words it contains,
    its vector similarity, its episode (session or thread), whether it is inside the time the query names,
    each signal's value (0-1) that the blend weighed, and the re-ranker's score when one re-ordered it."""

    lexical_rank: int | None = None
    exact_rank: int | None = None
    vector_rank: int | None = None
    context_rank: int | None = None
    episode_rank: int | None = None
    similarity: float | None = None
    terms: list[str] = []
    episode: str | None = None
    in_time_window: bool = False
    signals: dict[str, float] = {}
    rerank_score: float | None = None


class ContextTurn(_Wire):
    """A neighbouring memory of the same episode, given with a result when context_window > 0."""

    id: str
    content: str
    offset: int  # position relative to the result: -1 is the turn before it
    occurred_at: str | None
    metadata: dict[str, Any]


class SearchHit(_Wire):
    id: str
    cube: str
    content: str
    kind: str
    tags: list[str]
    metadata: dict[str, Any]
    source_agent: str
    created_at: str
    occurred_at: str | None
    importance: float
    score: float
    match: MatchInfo
    valid_from: str | None = None
    valid_to: str | None = None
    superseded_by: str | None = None
    context: list[ContextTurn] = []


class SearchQuery(_Wire):
    query: str
    cubes: list[str] | None = None
    k: int = 10
    kinds: list[MemoryKind] | None = None
    tags: list[str] | None = None
    since: str | None = None
    until: str | None = None
    source_agent: str | None = None
    mode: SearchMode | None = None
    include_superseded: bool = False
    as_of: str | None = None
    queries: list[str] | None = None  # more phrasings of the same need, fused with `query`
    reference_time: str | None = None  # what "last week" is counted from (default: as_of, else now)
    context_window: int = 0  # neighbouring turns to return with each result


class SearchResults(_Wire):
    results: list[SearchHit]
    mode: SearchMode
    cubes: list[str]
    note: str | None = None
    time_window: TimeWindow | None = None  # the time a phrase in the query named, if any


class MemoryPage(_Wire):
    memories: list[Memory]
    cubes: list[str]
    next_cursor: str | None = None


TaskStatus = Literal["pending", "accepted", "done", "cancelled"]
TaskPriority = Literal["low", "normal", "high"]


class TaskNote(_Wire):
    agent: str
    at: str
    text: str


class Task(_Wire):
    """Work handed from one agent to another, with the cubes in scope for its context."""

    id: str
    from_agent: str
    to_agent: str
    title: str
    description: str
    status: TaskStatus
    priority: TaskPriority
    cubes: list[str]  # empty: every cube the receiving agent may read
    created_at: str
    updated_at: str
    notes: list[TaskNote] = msgspec.field(default_factory=list)


class TaskPage(_Wire):
    tasks: list[Task]


class PackItem(_Wire):
    """One memory in a context pack, and why it is there."""

    id: str
    cube: str
    kind: str
    content: str
    source_agent: str
    reason: str  # "relevant", "preference", "task history", "working memory"
    score: float | None = None


class ContextPack(_Wire):
    """What an agent needs to start on a task, prepared before it asks: ranked, deduplicated, budgeted."""

    task: Task
    agent: str
    built_at: str
    budget_tokens: int
    tokens: int
    items: list[PackItem]
    notes: list[TaskNote]
    left_out: int  # memories that did not fit the budget
    markdown: str
