"""How the benchmarks talk to memosd: one tool call that fails loudly, the same call timed, and a wait for
the embedding model, over the SDK's own client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2-onnx"


class ToolFailed(Exception):
    """A tool answered with an error; the message is the tool's name and its error text."""


async def call(client: Any, tool: str, arguments: dict[str, Any]) -> Any:
    """The tool's structured result; ToolFailed if it answered with an error."""
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        raise ToolFailed(f"{tool}: {result.content[0].text}")
    return result.structured_content


async def timed(client: Any, tool: str, arguments: dict[str, Any]) -> tuple[float, Any]:
    """(seconds the call took, its structured result)."""
    start = time.perf_counter()
    result = await call(client, tool, arguments)
    return time.perf_counter() - start, result


async def wait_for_model(client: Any) -> None:
    """Return once searches are hybrid: the model is loaded, so what follows is measured with embedding."""
    while (await call(client, "memory_search", {"query": "warm up"}))["mode"] != "hybrid":  # noqa: ASYNC110 - polls the daemon
        await anyio.sleep(0.2)
