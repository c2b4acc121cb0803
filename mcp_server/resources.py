"""The MCP resources: cubes and memories as JSON documents an agent can read or attach."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from mcp.server.mcpserver import MCPServer

from daemon import MemosError, Services
from mcp_server.auth import current_agent
from mcp_server.errors import resource_error

JSON = "application/json"


async def _json(produce: Callable[[], Awaitable[Any]]) -> str:
    try:
        value = await produce()
    except MemosError as exc:
        raise resource_error(exc) from exc
    return msgspec.json.encode(value).decode()


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

    @mcp.resource("memos://memories/{id}", name="memory", title="One memory", mime_type=JSON)
    async def memory(id: str) -> str:
        """One memory with all its fields."""
        return await _json(lambda: services.memories.get(current_agent(), id))
