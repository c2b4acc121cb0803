"""Tool argument types shared by the tools: each with a description a model can act on."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from daemon import NewMemory

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
MetadataArg = Annotated[
    dict[str, Any] | None,
    Field(
        description="Any JSON object to keep with the memory. For a conversation turn (kind message), give"
        ' session (or thread), turn and role ("user" or "assistant"): search then uses its neighbours and speaker.'
    ),
]
WhenArg = Annotated[
    str | None, Field(description="ISO-8601 date or date-time when the remembered thing happened.")
]
ImportanceArg = Annotated[float | None, Field(description="0 (trivial) to 1 (critical); default 0.5.")]
ExpiresArg = Annotated[str | None, Field(description="ISO-8601 date-time after which the memory is hidden.")]
CubesArg = Annotated[
    list[str] | None, Field(description="Cubes to read. Omit to cover every cube you may read.")
]
TaskArg = Annotated[str | None, Field(description="The task this memory belongs to.")]
KeyArg = Annotated[
    str | None,
    Field(
        description="Any unique string; a retry with the same key returns the first result and writes nothing."
    ),
]
AsOfArg = Annotated[
    str | None,
    Field(description="ISO-8601 time: answer with what was true then (superseded memories included)."),
]
SupersededArg = Annotated[bool, Field(description="Also return memories that newer ones replaced (marked).")]


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
    task_id: TaskArg = None


def new_memory(
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
