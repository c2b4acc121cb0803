"""At most `[server] max_sessions_per_agent` open handshake-era sessions per agent.

The SDK caps sessions for the whole daemon (`max_sessions`, then 503) and ends idle ones, but one agent that
opens sessions and never ends them would use up the cap for every agent. This ASGI middleware, inside the
SDK's authentication (it needs the agent), keeps count per agent from the traffic it passes on: a session
opens with a response carrying `Mcp-Session-Id`, and is gone after a successful DELETE, a 404 for its id,
or once it has been idle as long as the SDK lets a session idle (the SDK's own clock starts a little
earlier, so the count never runs below the truth). A request that would open one more session is refused
with HTTP 429 and a JSON-RPC error saying what to do; the agent's open sessions, and every other agent, are
served as before. The modern era has no sessions and is never counted.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp_types import INVALID_REQUEST, ErrorData, JSONRPCError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

SESSION_HEADER = "mcp-session-id"


@dataclass
class _Session:
    agent: str
    in_flight: int
    idle_since: float


class SessionQuota:
    """ASGI middleware counting each agent's handshake-era sessions on `path` and refusing one too many."""

    def __init__(self, app: ASGIApp, *, path: str, per_agent: int, idle_timeout_s: float) -> None:
        self.app = app
        self._path = path
        self._per_agent = per_agent
        self._idle_timeout_s = idle_timeout_s
        self._sessions: dict[str, _Session] = {}
        self._opening: Counter[str] = Counter()  # sessions being opened, per agent

    def open_sessions(self, agent: str) -> int:
        """The sessions `agent` holds or is opening now."""
        self._forget_idle()
        return sum(1 for s in self._sessions.values() if s.agent == agent) + self._opening[agent]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = get_access_token()
        if scope["type"] != "http" or scope["path"] != self._path or token is None:
            await self.app(scope, receive, send)  # not ours to count (unauthenticated: the SDK says 401)
            return
        headers = Headers(scope=scope)
        session_id = headers.get(SESSION_HEADER)
        if session_id is not None:
            await self._in_session(session_id, token.client_id, scope, receive, send)
        elif headers.get("mcp-protocol-version") in (None, *HANDSHAKE_PROTOCOL_VERSIONS):
            await self._opening_session(token.client_id, scope, receive, send)  # as the SDK routes it
        else:
            await self.app(scope, receive, send)  # the modern era: no session

    async def _opening_session(self, agent: str, scope: Scope, receive: Receive, send: Send) -> None:
        if self.open_sessions(agent) >= self._per_agent:
            log.warning("Refusing a new session for %s: it has %d open", agent, self._per_agent)
            await _too_many(agent, self._per_agent, self._idle_timeout_s)(scope, receive, send)
            return
        self._opening[agent] += 1
        opened: str | None = None

        async def watch(message: Message) -> None:
            nonlocal opened
            if message["type"] == "http.response.start" and message["status"] < 400:
                opened = Headers(raw=message.get("headers", [])).get(SESSION_HEADER)
                if opened is not None:
                    self._sessions[opened] = _Session(agent, in_flight=1, idle_since=time.monotonic())
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._opening[agent] -= 1
            if not self._opening[agent]:
                del self._opening[agent]
            if opened is not None:
                self._request_ended(opened)

    async def _in_session(
        self, session_id: str, agent: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.agent != agent:
            await self.app(scope, receive, send)  # the SDK answers 404
            return
        session.in_flight += 1
        ended = False

        async def watch(message: Message) -> None:
            nonlocal ended
            if message["type"] == "http.response.start":
                status = message["status"]
                ended = status == 404 or (scope["method"] == "DELETE" and status < 400)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if ended:
                self._sessions.pop(session_id, None)
            else:
                self._request_ended(session_id)

    def _request_ended(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            session.in_flight -= 1
            session.idle_since = time.monotonic()

    def _forget_idle(self) -> None:
        """Drop sessions the SDK has ended for idling (it counts from the end of their last request too)."""
        cutoff = time.monotonic() - self._idle_timeout_s
        for session_id in [
            k for k, s in self._sessions.items() if not s.in_flight and s.idle_since <= cutoff
        ]:
            del self._sessions[session_id]


def _too_many(agent: str, limit: int, idle_timeout_s: float) -> Response:
    message = (
        f"Too many open sessions: agent {agent} already has {limit}, the most [server] max_sessions_per_agent"
        " allows. End sessions you no longer use (HTTP DELETE with their Mcp-Session-Id), or wait for idle"
        f" ones to close ({idle_timeout_s:g} s)."
    )
    body = JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(code=INVALID_REQUEST, message=message))
    return Response(
        body.model_dump_json(by_alias=True, exclude_unset=True),
        status_code=429,
        media_type="application/json",
    )
