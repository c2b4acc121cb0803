"""The link tools: memory_link and memory_unlink, typed relations between memories."""

from typing import Annotated

from mcp.server.mcpserver.tools import Tool
from pydantic import Field

from daemon import RELATIONS, LinkChange, Services
from mcp_server.arguments import KeyArg
from mcp_server.auth import current_agent
from mcp_server.wire import ADDITIVE_IDEMPOTENT, DESTRUCTIVE_IDEMPOTENT, make_tool

FromArg = Annotated[str, Field(description="The memory the link starts from (you need write on its cube).")]
ToArg = Annotated[str, Field(description="The memory it points to (any memory you can read).")]
RelationArg = Annotated[
    str,
    Field(
        description=f"One of {', '.join(RELATIONS)}; read it as"
        ' "from <relation> to", e.g. a decision about a project.'
    ),
]


def build_link_tools(services: Services) -> list[Tool]:
    async def memory_link(
        from_id: FromArg, to_id: ToArg, relation: RelationArg, idempotency_key: KeyArg = None
    ) -> LinkChange:
        """Record how two memories relate: a note about a person, a step that follows another, a fact that
        contradicts one. Links show in memory_get and memory_history. Linking again does nothing."""
        agent = current_agent()
        return await services.idempotent(
            agent, idempotency_key, "memory_link", [from_id, to_id, relation], LinkChange,
            lambda rec: services.links.link(agent, from_id, to_id, relation, recorder=rec),
        )  # fmt: skip

    async def memory_unlink(
        from_id: FromArg,
        to_id: ToArg,
        relation: Annotated[
            str | None, Field(description="Remove only this relation; omit to remove every link from→to.")
        ] = None,
        idempotency_key: KeyArg = None,
    ) -> LinkChange:
        """Remove a link made with memory_link that is wrong or no longer holds. The memories stay."""
        agent = current_agent()
        return await services.idempotent(
            agent, idempotency_key, "memory_unlink", [from_id, to_id, relation], LinkChange,
            lambda rec: services.links.unlink(agent, from_id, to_id, relation, recorder=rec),
        )  # fmt: skip

    return [
        make_tool(memory_link, LinkChange, ADDITIVE_IDEMPOTENT),
        make_tool(memory_unlink, LinkChange, DESTRUCTIVE_IDEMPOTENT),
    ]
