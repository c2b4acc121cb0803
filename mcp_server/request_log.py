"""One structured log line per MCP request: request id, agent, method, tool or resource, latency, outcome.
Never arguments or memory content, which are the user's data."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult

log = logging.getLogger("memos.requests")


async def log_request(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    started = time.perf_counter()
    request_id = secrets.token_hex(4)
    token = get_access_token()
    target = ""
    if ctx.params:
        target = str(ctx.params.get("name") or ctx.params.get("uri") or "")
    outcome = "ok"
    try:
        result = await call_next(ctx)
        # The SDK hands middleware the result as a model or, for tools, already as its wire dict.
        failed = result.is_error if isinstance(result, CallToolResult) else None
        if isinstance(result, dict):
            failed = result.get("isError")
        if failed:
            outcome = "tool_error"
        return result
    except BaseException as exc:
        outcome = type(exc).__name__
        raise
    finally:
        log.info(
            "%s%s%s %s %.1f ms",
            ctx.method,
            f" {target}" if target else "",
            f" by {token.client_id}" if token else "",
            outcome,
            (time.perf_counter() - started) * 1000,
            extra={
                "request_id": request_id,
                "agent": token.client_id if token else None,
                "method": ctx.method,
                "target": target or None,
                "outcome": outcome,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
