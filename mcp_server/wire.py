"""How a service result becomes an MCP tool result: structured content from a msgspec Struct, the same JSON
as text for hosts that read only text, and an output schema derived from the Struct's type."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

import msgspec
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, TextContent, ToolAnnotations

from daemon import MemosError
from mcp_server.errors import tool_error

P = ParamSpec("P")

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
ADDITIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
ADDITIVE_IDEMPOTENT = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
DESTRUCTIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)
DESTRUCTIVE_IDEMPOTENT = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)


def output_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """The Struct's JSON schema with its own definition at the root, as MCP wants an object schema there."""
    (ref,), components = msgspec.json.schema_components([struct], ref_template="#/$defs/{name}")
    root = dict(components.pop(ref["$ref"].rsplit("/", 1)[-1]))
    if components:
        root["$defs"] = components
    return root


def to_result(value: msgspec.Struct) -> CallToolResult:
    data = msgspec.to_builtins(value)
    text = msgspec.json.encode(data).decode()
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def make_tool(
    fn: Callable[P, Awaitable[msgspec.Struct]], output: type[msgspec.Struct], annotations: ToolAnnotations
) -> Tool:
    """An SDK Tool from an async function whose parameters are its arguments and whose result is a Struct."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> CallToolResult:
        try:
            return to_result(await fn(*args, **kwargs))
        except MemosError as exc:
            raise tool_error(exc) from exc

    run.__annotations__ = {**fn.__annotations__, "return": CallToolResult}
    tool = Tool.from_function(run, name=fn.__name__, annotations=annotations, structured_output=False)
    tool.fn_metadata.output_schema = output_schema(output)
    # Without its docstring's indentation: a model reads every description in every conversation.
    tool.description = inspect.cleandoc(tool.description or "")
    return tool
