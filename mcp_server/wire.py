"""How a service result becomes an MCP tool result: structured content from a msgspec Struct, the same JSON
as text for hosts that read only text, and an output schema derived from the Struct's type."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

import msgspec
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import ValidationError

from daemon import InvalidInput, MemosError
from mcp_server.argument_errors import check_arguments, validation_problem
from mcp_server.errors import tool_error_result

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
    """The Struct's JSON schema with its own definition at the root, as MCP wants an object schema there,
    in the form cheapest to check: the SDK's Python client validates every result against it with
    `jsonschema`, where `$ref` and `anyOf` were 40% of the check of a search's result at k=10 (2.5 ms of the
    client's CPU per call, 1.4 ms written flat; issue 17). So definitions are written in place and an
    optional value is one `type` list; the schema accepts exactly what msgspec's would."""
    (ref,), components = msgspec.json.schema_components([struct], ref_template="#/$defs/{name}")
    return _flat(components[ref["$ref"].rsplit("/", 1)[-1]], components, ())


# Keywords that constrain only a value of one JSON type and say nothing of `null`, and annotations.
_TYPED_KEYWORDS = frozenset(
    {"type", "title", "description", "properties", "required", "additionalProperties", "items"}
)
# Keywords whose value is data (or names), never a schema to look into.
_VALUES = frozenset({"enum", "const", "default", "examples", "required", "title", "description"})


def _flat(schema: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    """`schema` with each `$ref` replaced by its definition, and `anyOf: [S, {"type": "null"}]` by S with
    "null" added to its type where S is one type's schema (its other keywords then leave null alone)."""
    if isinstance(schema, list):
        return [_flat(item, defs, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and len(schema) == 1:
        name = ref.removeprefix("#/$defs/")
        if name in seen:  # a recursive Struct: msgspec's own schema cannot be written out in place
            raise ValueError(f"output schema of {seen[0]} refers to itself through {name}")
        return _flat(defs[name], defs, (*seen, name))
    flat = {key: value if key in _VALUES else _flat(value, defs, seen) for key, value in schema.items()}
    if isinstance(schema.get("properties"), dict):  # names, each to a schema (a name may be "$ref")
        flat["properties"] = {name: _flat(value, defs, seen) for name, value in schema["properties"].items()}
    options = flat.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        (other,) = [option for option in options if option != {"type": "null"}]
        if isinstance(other.get("type"), str) and other.keys() <= _TYPED_KEYWORDS:
            del flat["anyOf"]
            return {**other, **flat, "type": [other["type"], "null"]}
    return flat


def to_result(value: msgspec.Struct) -> dict[str, Any]:
    """A successful result in its wire form (what `CallToolResult.model_dump(by_alias=True, mode="json",
    exclude_none=True)` gives), encoded once: the text is the Struct's JSON and the structured content that
    JSON decoded. The SDK still checks the result against the protocol's schema before it sends it; handing
    it the wire form spares it building a model of a large result and walking it again (issue 17)."""
    text = msgspec.json.encode(value)
    return {
        "content": [{"type": "text", "text": text.decode()}],
        "structuredContent": msgspec.json.decode(text),
        "isError": False,
        "resultType": "complete",  # the protocol's sieve keeps it for the eras that have it, as for the model
    }


class StrictTool(Tool):
    """The SDK's Tool, stricter with arguments and plain about failures: unknown names and non-finite
    numbers are refused, and every failure is an `isError` result in our words (see mcp_server.errors),
    where the SDK would ignore the former and prefix the latter with `Error executing tool NAME`.

    A call returns the result as `make_tool`'s function made it (a wire-form dict, or a CallToolResult for
    a failure): the SDK's conversion of a return value has nothing to add to either, and the server's
    request handler takes both forms."""

    async def run(
        self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False
    ) -> Any:
        try:
            check_arguments(self.fn_metadata.pre_parse_json(arguments), self.parameters)
            return await super().run(arguments, context, convert_result=False)
        except InvalidInput as exc:
            return tool_error_result(exc)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):  # the SDK's validation against the input schema
                return tool_error_result(validation_problem(exc.__cause__))
            raise


def make_tool(
    fn: Callable[P, Awaitable[msgspec.Struct]], output: type[msgspec.Struct], annotations: ToolAnnotations
) -> Tool:
    """An SDK Tool from an async function whose parameters are its arguments and whose result is a Struct."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> dict[str, Any] | CallToolResult:
        try:
            return to_result(await fn(*args, **kwargs))
        except MemosError as exc:
            return tool_error_result(exc)

    run.__annotations__ = {**fn.__annotations__, "return": CallToolResult}
    tool = StrictTool.from_function(run, name=fn.__name__, annotations=annotations, structured_output=False)
    tool.fn_metadata.output_schema = output_schema(output)
    # Without its docstring's indentation: a model reads every description in every conversation.
    tool.description = inspect.cleandoc(tool.description or "")
    return tool
