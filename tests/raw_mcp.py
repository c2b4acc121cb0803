"""Long-lived MCP streams opened with plain HTTP, as hosts hold them: a modern-era `subscriptions/listen` and
a handshake-era session's GET event stream. Tests of stopping and of revoked access need them open, raw, to
see exactly when and how the daemon ends them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2

MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


def headers(token: str, **extra: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        **extra,
    }


@asynccontextmanager
async def listen_stream(
    http: httpx2.AsyncClient, url: str, token: str, uris: list[str]
) -> AsyncIterator[httpx2.Response]:
    """An open modern-era `subscriptions/listen` stream for `uris` (its acknowledgement already read)."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "subscriptions/listen",
        "params": {"_meta": ENVELOPE, "notifications": {"resourceSubscriptions": uris}},
    }
    extra = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "subscriptions/listen"}
    async with http.stream("POST", url, json=body, headers=headers(token, **extra)) as response:
        assert response.status_code == 200, await response.aread()
        yield response


@asynccontextmanager
async def session_stream(
    http: httpx2.AsyncClient, url: str, token: str
) -> AsyncIterator[tuple[str, httpx2.Response]]:
    """A handshake-era session (initialized) and its open GET event stream."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": HANDSHAKE,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    opened = await http.post(url, json=initialize, headers=headers(token))
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    in_session = headers(token, **{"Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE})
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=in_session)
    async with http.stream("GET", url, headers=in_session | {"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        yield session, response


def session_request(
    session: str, token: str, method: str, params: dict[str, Any], request_id: int = 2
) -> dict[str, Any]:
    """The keyword arguments of an httpx POST for a request in a handshake-era session."""
    return {
        "json": {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params},
        "headers": headers(token, **{"Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE}),
    }


async def messages(response: httpx2.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON-RPC messages of an event stream, until it ends."""
    async for line in response.aiter_lines():
        if line.startswith("data:") and line[5:].strip():
            yield json.loads(line[5:])
