"""At most `[server] max_sessions_per_agent` open handshake-era sessions per agent, and no lock-out.

The SDK caps sessions for the whole daemon (`max_sessions`, then 503) and ends idle ones, but one agent that
opens sessions and never ends them would use up the cap for every agent. This ASGI middleware, inside the
SDK's authentication (it needs the agent), keeps count per agent (and in all) from the traffic it passes on: a session
opens with a response carrying `Mcp-Session-Id`, and is gone after a successful DELETE, a 404 for its id,
once it has been idle as long as the SDK lets a session idle (the SDK's own clock starts a little earlier,
so the count never runs below the truth), or once closed here.

Standard clients (the official TypeScript SDK, the Inspector) never send DELETE, so an agent at its limit
gets its oldest idle session (no request in flight, no event stream open) closed to make room: a client
that behaves like them never locks itself out; at the daemon-wide cap (`max_sessions`) the session idle
longest is closed, so many such agents together do not lock each other out either. Only when every one of
the agent's sessions is in use is a new one refused, with HTTP 429, `Retry-After` and a JSON-RPC error saying
what to do; when every session of the daemon is, the SDK's 503 gets `Retry-After` too. A request for a session that no longer exists (ended, idled out,
closed to make room, or from before a daemon restart) gets the SDK's 404 with a body that says to start a
new session, which is what the specification asks a client to do. The modern era has no sessions and is
never counted.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp_types import INVALID_REQUEST, ErrorData, JSONRPCError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

SESSION_HEADER = "mcp-session-id"
RETRY_AFTER_S = 10  # what a refused client is told to wait before it tries to open a session again

CloseSession = Callable[[str], Awaitable[None]]


class SdkSessions:
    """The SDK session manager's handshake-era sessions, as far as memos needs them: whose they are, and
    closing them as a DELETE would (the id answers 404 from then on, its requests and event stream end).
    The SDK has no public call for either in 2.3.0, so this is the one place that reads its private state."""

    def __init__(self, mcp: Any) -> None:
        self._mcp = mcp  # its session_manager exists once the app is built

    def of_agent(self, agent: str) -> list[str]:
        owners = self._mcp.session_manager._session_owners
        return [session_id for session_id, owner in list(owners.items()) if owner["client_id"] == agent]

    async def close(self, session_id: str) -> None:
        manager = self._mcp.session_manager
        transport = manager._server_instances.get(session_id)
        if transport is not None:
            await manager._discard_session(session_id, transport)

    async def close_all(self, agent: str | None = None) -> int:
        """Close every session (of `agent`, if given); returns how many."""
        manager = self._mcp.session_manager
        ids = list(manager._server_instances) if agent is None else self.of_agent(agent)
        for session_id in ids:
            await self.close(session_id)
        return len(ids)


@dataclass
class _Session:
    agent: str
    in_flight: int
    idle_since: float


class SessionQuota:
    """ASGI middleware counting each agent's handshake-era sessions on `path`: at the limit it closes the
    agent's oldest idle session to make room, and refuses only when every one is in use."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        per_agent: int,
        max_sessions: int,
        idle_timeout_s: float,
        close: CloseSession,
    ) -> None:
        self.app = app
        self._path = path
        self._per_agent = per_agent
        self._max_sessions = max_sessions
        self._idle_timeout_s = idle_timeout_s
        self._close = close
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
        send = _with_retry_after(send)
        if session_id is not None:
            await self._in_session(session_id, token.client_id, scope, receive, send)
        elif headers.get("mcp-protocol-version") in (None, *HANDSHAKE_PROTOCOL_VERSIONS):
            await self._opening_session(token.client_id, scope, receive, send)  # as the SDK routes it
        else:
            await self.app(scope, receive, send)  # the modern era: no session

    def _make_room(self, agent: str) -> tuple[bool, str | None]:
        """Whether `agent` may open one more session, and the session to close for it: at its own limit its
        oldest idle one; at the daemon-wide limit its own oldest idle one, else the one idle longest of any
        agent (whose client re-initializes on the 404, as the specification says). False only when the
        agent is at its limit with every session in use; at the daemon-wide limit with every session in
        use the SDK answers 503. Decided without an await, so concurrent requests never both take the last
        place."""
        own_full = self.open_sessions(agent) >= self._per_agent
        all_full = len(self._sessions) + sum(self._opening.values()) >= self._max_sessions
        if not own_full and not all_full:
            return True, None
        idle = sorted(
            (s.idle_since, s.agent != agent, key) for key, s in self._sessions.items() if not s.in_flight
        )
        own = [key for _, other, key in idle if not other]
        candidates = own if own_full else own or [key for _, _, key in idle]
        if not candidates:
            return not own_full, None
        del self._sessions[candidates[0]]
        return True, candidates[0]

    async def _opening_session(self, agent: str, scope: Scope, receive: Receive, send: Send) -> None:
        admitted, to_close = self._make_room(agent)
        if not admitted:
            log.warning(
                "Refusing a new session for %s: its %d sessions are all in use", agent, self._per_agent
            )
            await _too_many(agent, self._per_agent)(scope, receive, send)
            return
        self._opening[agent] += 1
        opened: str | None = None

        def done_opening() -> None:
            self._opening[agent] -= 1
            if not self._opening[agent]:
                del self._opening[agent]

        async def watch(message: Message) -> None:
            nonlocal opened
            if message["type"] == "http.response.start" and message["status"] < 400:
                opened = Headers(raw=message.get("headers", [])).get(SESSION_HEADER)
                if opened is not None:  # counted as a session from now on, no longer as one being opened
                    self._sessions[opened] = _Session(agent, in_flight=1, idle_since=time.monotonic())
                    done_opening()
            await send(message)

        try:
            if to_close is not None:
                log.info("closing the oldest idle session of %s to make room for a new one", agent)
                await self._close(to_close)
            await self.app(scope, receive, watch)
        finally:
            if opened is None:
                done_opening()
            else:
                self._request_ended(opened)

    async def _in_session(
        self, session_id: str, agent: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.agent != agent:
            await self.app(scope, receive, _explain_not_found(send))  # the SDK answers 404
            return
        session.in_flight += 1
        ended = False
        send = _explain_not_found(send)

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


def _error_body(message: str) -> bytes:
    body = JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(code=INVALID_REQUEST, message=message))
    return body.model_dump_json(by_alias=True, exclude_unset=True).encode()


def _too_many(agent: str, limit: int) -> Response:
    message = (
        f"Too many open sessions: agent {agent} already has {limit}, the most [server] max_sessions_per_agent"
        " allows, and each has a request or an event stream open. End one you no longer use (HTTP DELETE"
        f" with its Mcp-Session-Id), or retry after {RETRY_AFTER_S} s."
    )
    return Response(
        _error_body(message),
        status_code=429,
        media_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


SESSION_GONE = (
    "Session not found: it has ended (closed by the client, idle too long, closed to make room for a newer"
    " one, or the daemon restarted). Start a new session: send initialize without an Mcp-Session-Id."
)


def _explain_not_found(send: Send) -> Send:
    """The SDK's 404 for a session id it does not know, with a body that says what to do."""
    replacing = False

    async def explained(message: Message) -> None:
        nonlocal replacing
        if message["type"] == "http.response.start" and message["status"] == 404:
            replacing = True
            body = _error_body(SESSION_GONE)
            headers = MutableHeaders(raw=list(message.get("headers", [])))
            headers["content-length"] = str(len(body))
            headers["content-type"] = "application/json"
            await send({**message, "headers": headers.raw})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        elif not replacing:
            await send(message)

    return explained


def _with_retry_after(send: Send) -> Send:
    """Every 429 and 503 says when to try again (the SDK's 503 at `[server] max_sessions` does not)."""

    async def with_header(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] in (429, 503):
            headers = MutableHeaders(raw=list(message.get("headers", [])))
            headers.setdefault("retry-after", str(RETRY_AFTER_S))
            message = {**message, "headers": headers.raw}
        await send(message)

    return with_header
