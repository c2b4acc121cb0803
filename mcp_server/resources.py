"""The MCP resources: cubes and memories as JSON documents an agent can read or attach."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from mcp.server.mcpserver import MCPServer

from daemon import Agent, MemosError, NotFound, Services
from mcp_server.auth import current_agent
from mcp_server.errors import resource_error

JSON = "application/json"


async def _json(produce: Callable[[], Awaitable[Any]]) -> str:
    try:
        value = await produce()
    except MemosError as exc:
        raise resource_error(exc) from exc
    return msgspec.json.encode(value).decode()


def _own(agent: str, what: str) -> Agent:
    """The caller, if `agent` names it: memos://agents/{agent}/… resources are each agent's own."""
    me = current_agent()
    if agent != me.name:
        raise NotFound(f"memos://agents/{agent}/{what} is not yours; read memos://agents/{me.name}/{what}")
    return me


def add_resources(mcp: MCPServer, services: Services) -> None:
    @mcp.resource("memos://cubes", name="cubes", title="Your memory cubes", mime_type=JSON)
    async def cubes() -> str:
        """Every memory cube you can read, with owner, description and memory count."""
        return await _json(lambda: services.cubes.list(current_agent()))

    @mcp.resource("memos://cubes/{cube}", name="cube", title="One memory cube", mime_type=JSON)
    async def cube(cube: str) -> str:
        """One cube's description and its newest memories (up to 50)."""

        async def produce() -> dict[str, Any]:
            agent = current_agent()
            about = await services.cubes.describe(agent, cube)
            page = await services.memories.list(agent, cubes=[cube], limit=50)
            return {"cube": about, "memories": page.memories, "next_cursor": page.next_cursor}

        return await _json(produce)

    @mcp.resource("memos://audit", name="audit", title="Audit log of cubes you administer", mime_type=JSON)
    async def audit() -> str:
        """The newest 200 audit entries (writes, share changes, denials) of the cubes you administer."""

        async def produce() -> list[Any]:
            agent = current_agent()
            return await services.audit.entries(cubes=await services.cubes.administered(agent), limit=200)

        return await _json(produce)

    @mcp.resource(
        "memos://tasks/{id}/context", name="task-context", title="A task's context pack", mime_type=JSON
    )
    async def task_context(id: str) -> str:
        """The context pack prepared for you for this task (tasks you take part in)."""
        return await _json(lambda: services.packs.get(current_agent(), id))

    @mcp.resource(
        "memos://agents/{agent}/context", name="agent-context", title="Your current context", mime_type=JSON
    )
    async def agent_context(agent: str) -> str:
        """The context pack of your current task (the one you accepted last, else your newest open task)."""

        async def produce() -> Any:
            return await services.packs.current(_own(agent, "context"))

        return await _json(produce)

    @mcp.resource("memos://agents/{agent}/tasks", name="agent-tasks", title="Your tasks", mime_type=JSON)
    async def agent_tasks(agent: str) -> str:
        """Tasks handed to you or by you, newest first."""

        async def produce() -> Any:
            return await services.tasks.list(_own(agent, "tasks"))

        return await _json(produce)

    @mcp.resource(
        "memos://agents/{agent}/working-memory",
        name="working-memory",
        title="Your working memory",
        mime_type=JSON,
    )
    async def working_memory(agent: str) -> str:
        """The memories you wrote or read most recently, newest first, with the task they belong to."""

        async def produce() -> Any:
            return services.working.recent(_own(agent, "working-memory").name)

        return await _json(produce)

    @mcp.resource("memos://memories/{id}", name="memory", title="One memory", mime_type=JSON)
    async def memory(id: str) -> str:
        """One memory with all its fields and its links."""
        return await _json(lambda: services.links.get(current_agent(), id))

    @mcp.resource(
        "memos://memories/{id}/neighbourhood",
        name="memory-neighbourhood",
        title="A memory's linked memories",
        mime_type=JSON,
    )
    async def memory_neighbourhood(id: str) -> str:
        """The memory and those linked to it up to two links away (only memories you can read), with the
        links between them."""
        return await _json(lambda: services.links.neighbourhood(current_agent(), id))
