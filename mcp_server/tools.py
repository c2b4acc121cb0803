"""The MCP tools: parse arguments, identify the agent, call the service API, shape the result.

Descriptions are written for the model that calls them: what the tool is for and when to use it. Every tool
has a default scope (writes go to the caller's private cube, reads cover every cube it may read) and every
result names the scope it used. Every write takes an optional `idempotency_key`.
"""

from mcp.server.mcpserver.tools import Tool

from daemon import Services
from mcp_server.cube_tools import build_cube_tools
from mcp_server.link_tools import build_link_tools
from mcp_server.memory_tools import build_memory_tools
from mcp_server.task_tools import build_task_tools


def build_tools(services: Services) -> list[Tool]:
    return (
        build_cube_tools(services)
        + build_memory_tools(services)
        + build_link_tools(services)
        + build_task_tools(services)
    )
