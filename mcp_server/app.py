"""Compose the MCP server: tools, resources, bearer-token auth, and the streamable-HTTP ASGI app.

`build_catalog` defines the same server without opening anything, for the stdio bridge to describe memosd
(instructions, tools, resources) to a host while the daemon is not up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn, cast

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from daemon import Config, Services
from mcp_server.auth import AgentTokenVerifier
from mcp_server.errors import unknown_tools_refused
from mcp_server.notifications import Notifications
from mcp_server.request_log import log_request
from mcp_server.resources import add_resources
from mcp_server.session_quota import SdkSessions, SessionQuota
from mcp_server.tools import build_tools
from mcp_server.ui import Dashboard

INSTRUCTIONS = """memos is your long-term memory, shared with other agents under access policies.
Search it (memory_search) before answering questions that earlier sessions may know about: the user's
preferences, decisions, people and projects. Remember (memory_add) durable facts, preferences and decisions
as self-contained sentences. Your writes go to your private cube unless you name a shared cube."""

MCP_PATH = "/mcp"


def _define(services: Services, version: str, tools: list[Tool], **serving: Any) -> MCPServer:
    """The server's identity, guidance, tools and resources: one definition for memosd and the bridge."""
    mcp: MCPServer = MCPServer(
        name="memos", version=version, instructions=INSTRUCTIONS, tools=tools, **serving
    )
    add_resources(mcp, services)
    return mcp


def build_mcp(services: Services, version: str) -> tuple[MCPServer, Notifications]:
    """The MCP server and its notifier (whose `run` the caller starts in its task group)."""
    server = services.config.server
    # The issuer is a placeholder the SDK requires; tokens come from `memos agent add`, not from OAuth.
    base = f"http://{server.host}:{server.port}"
    tools = build_tools(services)
    mcp = _define(
        services,
        version,
        tools,
        token_verifier=AgentTokenVerifier(services.identities),
        auth=AuthSettings(issuer_url=base, resource_server_url=None),  # type: ignore[arg-type]
        middleware=[log_request, unknown_tools_refused({tool.name for tool in tools})],
    )
    notifications = Notifications(services)
    notifications.install(mcp)
    mcp.middleware.append(notifications.preload)

    @mcp.custom_route("/healthz", methods=["GET"])
    async def healthz(request: Request) -> Response:
        """Liveness for supervisors; unauthenticated, so it carries no data."""
        return JSONResponse({"status": "ok"})

    return mcp, notifications


def build_app(mcp: MCPServer, services: Services, dashboard: Dashboard | None = None) -> Starlette:
    """The ASGI app: the MCP endpoint, and the dashboard at /ui when one is given."""
    server = services.config.server
    app = mcp.streamable_http_app(
        streamable_http_path=MCP_PATH,
        session_idle_timeout=server.session_idle_timeout_s,
        max_sessions=server.max_sessions,
        max_request_body_size=server.max_request_bytes,
        host=server.host,
    )
    if dashboard is not None:
        app.router.routes.append(dashboard.mount())
    # Appended, so it runs after the SDK's authentication middleware and knows the agent.
    app.user_middleware.append(
        Middleware(
            SessionQuota,
            path=MCP_PATH,
            per_agent=server.max_sessions_per_agent,
            max_sessions=server.max_sessions,
            idle_timeout_s=server.session_idle_timeout_s,
            close=SdkSessions(mcp).close,
        )
    )
    return app


class _Unopened:
    """The services as tool and resource definitions read them while being built: the configuration (tool
    descriptions quote its limits). Nothing is opened; a definition run against it is a wiring slip."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def __getattr__(self, name: str) -> NoReturn:
        raise RuntimeError(f"services.{name} is not open: a catalog lists memosd's tools, it never runs them")


@dataclass(frozen=True)
class Catalog:
    """memosd's MCP server as `build_mcp` defines it, never served: for its name, version, instructions and
    listings, and for its tools' argument models (to check a call's arguments as memosd will)."""

    server: MCPServer
    tools: dict[str, Tool]


def build_catalog(config: Config, version: str) -> Catalog:
    """The catalog for this configuration, with nothing opened: no model, no database, no network."""
    services = cast(Services, _Unopened(config))
    tools = build_tools(services)
    server = _define(services, version, tools, log_level="WARNING")
    return Catalog(server=server, tools={tool.name: tool for tool in tools})
