"""Our errors as MCP errors, in one place: tool failures are `isError` results with a message a model can act
on; resource failures are JSON-RPC errors (not found: -32602)."""

from __future__ import annotations

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError

from daemon.errors import (
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
)

# The first words of a message tell a model what kind of failure it is and what to do next.
_PREFIXES: dict[type[MemosError], str] = {
    InvalidInput: "Invalid input",
    NotFound: "Not found",
    PermissionDenied: "Permission denied",
    Conflict: "Conflict",
    Unauthenticated: "Not authenticated",
    Overloaded: "Busy, retry shortly",
    Unavailable: "Unavailable",
    StoreError: "Storage error",
    StoreBusy: "Busy",
    StorageFull: "Storage full",
    StoreCorrupt: "Storage damaged",
}


def describe(exc: MemosError) -> str:
    for cls in type(exc).__mro__:
        if cls in _PREFIXES:
            return f"{_PREFIXES[cls]}: {exc}"
    return str(exc)


def tool_error(exc: MemosError) -> ToolError:
    return ToolError(describe(exc))


def resource_error(exc: MemosError) -> ResourceError:
    if isinstance(exc, NotFound):
        return ResourceNotFoundError(describe(exc))
    return ResourceError(describe(exc))
