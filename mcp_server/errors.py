"""Our errors as MCP errors, in one place, the same in both protocol eras and through the stdio bridge.

A tool that fails answers with an `isError` result whose text is `describe(exc)`: the kind of failure first
(`Invalid input: …`, `Not found: …`, `Conflict: …`), then what to do. The SDK would put `Error executing tool
NAME: ` before any error raised out of a tool, so tools return these results instead of raising. A resource
read that fails for the caller's reasons (no such object, not theirs, a malformed id) is the JSON-RPC error
-32602 (invalid params), as the 2026-07-28 specification says for a resource that cannot be found; a failure
of the daemon itself is -32603.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import CallToolResult, TextContent

from daemon import (
    ConfigError,
    Conflict,
    InvalidInput,
    MemosError,
    NotFound,
    Overloaded,
    PermissionDenied,
    StorageFull,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    Unauthenticated,
    Unavailable,
    shown,
)

# The first words of a message tell a model what kind of failure it is and what to do next. Every class of
# the hierarchy finds its words here through its bases (a test checks each one does).
PREFIXES: dict[type[MemosError], str] = {
    InvalidInput: "Invalid input",
    NotFound: "Not found",
    PermissionDenied: "Permission denied",
    Conflict: "Conflict",
    Unauthenticated: "Not authenticated",
    Overloaded: "Busy",
    Unavailable: "Unavailable",
    StoreError: "Storage error",
    StoreBusy: "Busy",
    StorageFull: "Storage full",
    StoreCorrupt: "Storage damaged",
    ConfigError: "Configuration error",
    MemosError: "Failed",
}

# Failures a caller caused (and can correct) when reading a resource: -32602, never -32603.
_CALLERS_RESOURCE_ERRORS = (InvalidInput, NotFound, PermissionDenied)


def describe(exc: MemosError) -> str:
    """The message a model reads: the kind of failure, then ours."""
    prefix = next(PREFIXES[cls] for cls in type(exc).__mro__ if cls in PREFIXES)
    return f"{prefix}: {exc}"


def tool_error_result(exc: MemosError) -> CallToolResult:
    """A tool's answer for a failure: `isError` with the described message, nothing else."""
    return CallToolResult(content=[TextContent(type="text", text=describe(exc))], is_error=True)


def resource_error(exc: MemosError) -> ResourceError:
    """The SDK turns ResourceNotFoundError into -32602 and any other ResourceError into -32603."""
    if isinstance(exc, _CALLERS_RESOURCE_ERRORS):
        return ResourceNotFoundError(describe(exc))
    return ResourceError(describe(exc))


def unknown_tools_refused(names: Collection[str]) -> Any:
    """MCP middleware: a call of a tool that does not exist is `Not found:` with the nearest name, in our
    words like every other failure (the SDK's own answer is a bare `Unknown tool: NAME`)."""

    async def refuse(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        name = ctx.params.get("name") if ctx.method == "tools/call" and ctx.params else None
        if isinstance(name, str) and name not in names:
            close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "tools/list names the tools"
            return tool_error_result(NotFound(f"no tool named {shown(name, 64)}; {hint}"))
        return await call_next(ctx)

    return refuse
