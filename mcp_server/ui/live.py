"""Live updates for open dashboard pages: a server-sent event stream fed by the core's change hub.

The same events drive MCP notifications (mcp_server/notifications.py). Each stream belongs to one session:
before an event is sent, the session is checked again (a rotated token ends the stream) and a memory event
goes out only if its cube is readable by the agent at that moment. Events carry ids and cube names, never
content: the page fetches itself again, through the same checked routes, to show what changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from daemon import Change, CubesChanged, MemoryChanged, PackReady, Services, TaskChanged
from mcp_server.ui.sessions import COOKIE, UiSession, UiSessions

log = logging.getLogger(__name__)
TICK_S = (
    5.0  # a quiet stream sends a tick this often: it keeps the connection open and the health page current
)
_BUFFER = 256  # events a slow page may fall behind by; beyond that it misses some (it refreshes anyway)


class UiLive:
    def __init__(self, services: Services, sessions: UiSessions) -> None:
        self._services = services
        self._sessions = sessions
        self._streams: set[MemoryObjectSendStream[Change]] = set()
        self._stopping = False

    def stop(self) -> None:
        """End every open stream (the daemon is stopping: uvicorn would otherwise wait for them)."""
        self._stopping = True
        for send in list(self._streams):
            send.close()

    async def events(self, request: Request, session: UiSession) -> Response:
        if self._stopping:
            return Response("memosd is stopping", status_code=503)
        send, receive = anyio.create_memory_object_stream[Change](_BUFFER)

        def enqueue(change: Change) -> None:
            # A page that stopped reading misses events; it shows them on its next refresh.
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                send.send_nowait(change)

        session_id = request.cookies.get(COOKIE)

        async def stream() -> AsyncIterator[str]:
            self._streams.add(send)
            unsubscribe = self._services.hub.subscribe(enqueue)
            try:
                yield "retry: 3000\n\n"
                while True:
                    change: Change | None = None
                    with anyio.move_on_after(TICK_S):
                        try:
                            change = await receive.receive()
                        except anyio.EndOfStream:
                            return
                    current = await self._sessions.resolve(session_id)
                    if current is None:
                        yield "event: signed-out\ndata: {}\n\n"
                        return
                    if change is None:
                        yield "event: tick\ndata: {}\n\n"
                        continue
                    message = await self._message(current, change)
                    if message is not None:
                        yield message
            finally:
                unsubscribe()
                self._streams.discard(send)
                send.close()
                receive.close()

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )

    async def _message(self, session: UiSession, change: Change) -> str | None:
        """The event for this page, if the agent may know of the change now."""
        agent = session.acting
        if isinstance(change, MemoryChanged):
            if change.cube not in await self._services.cubes.readable(agent):
                return None
            return _event("memory", {"cube": change.cube, "id": change.memory_id})
        if isinstance(change, TaskChanged) and agent.name in change.agents:
            return _event("task", {"id": change.task_id})
        if isinstance(change, PackReady) and change.agent == agent.name:
            return _event("task", {"id": change.task_id})
        if isinstance(change, CubesChanged):
            return _event("cubes", {})
        return None


def _event(name: str, data: dict[str, str]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
