"""Live notifications: clients that subscribe to a cube, a memory, a task or their context are told when it
changes, in both protocol eras, and only about what they may read now.

Handshake-era sessions subscribe with `resources/subscribe`; subscriptions are kept by `Mcp-Session-Id` and
forgotten once the session has been idle as long as the SDK lets a session idle (sending to an ended session
is silently dropped by the SDK, so nothing tells us it ended). Modern-era clients open `subscriptions/listen` streams;
each stream is tied to the agent that opened it, so an event reaches only the agents it is for. Events come
from the core's change hub after commit and are handled by one task here, which checks permissions. An agent
that is disabled or whose token is rotated (AgentRevoked) has its listen streams and sessions ended, and on
shutdown everyone's are, first.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server import MCPServer
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ListenHandler, ResourcesListChanged, ResourceUpdated, ServerEvent
from mcp.shared.exceptions import MCPError

from daemon import (
    AgentRevoked,
    Change,
    CubesChanged,
    MemoryChanged,
    MemosError,
    PackReady,
    Services,
    TaskChanged,
    Unauthenticated,
    agent_named,
    retrying,
)
from mcp_server.auth import current_agent
from mcp_server.session_quota import SdkSessions

log = logging.getLogger(__name__)
_Ctx = ServerRequestContext[Any, Any]


@dataclass(eq=False)
class _Watch:
    session: Any  # the SDK's ServerSession: send_resource_updated / send_resource_list_changed
    agent: str
    uris: set[str] = field(default_factory=set)
    seen: float = 0.0


def _session_key(ctx: _Ctx) -> str:
    headers = getattr(ctx.request, "headers", None)
    session_id = headers.get("mcp-session-id") if headers is not None else None
    return session_id or f"object-{id(ctx.session)}"


class _AgentBus:
    """The bus one listen stream sees: only events meant for its agent."""

    def __init__(self, listeners: set[Callable[[ServerEvent], None]]) -> None:
        self._listeners = listeners

    async def publish(self, event: ServerEvent) -> None:  # pragma: no cover - events come from Notifications
        for listener in list(self._listeners):
            listener(event)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)


class Notifications:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._sessions: dict[str, _Watch] = {}  # Mcp-Session-Id -> what that session watches
        self._idle_s = services.config.server.session_idle_timeout_s
        self._listeners: defaultdict[str, set[Callable[[ServerEvent], None]]] = defaultdict(set)
        self._streams: defaultdict[str, set[ListenHandler]] = defaultdict(set)  # agent -> open listen streams
        self._sdk_sessions: SdkSessions | None = None
        self._readable: dict[str, frozenset[str]] = {}  # agent -> cubes it could read when last told
        self._queue: MemoryObjectSendStream[Change] | None = None
        self._seen: dict[str, float] = {}  # agent -> when its packs were last preloaded

    def install(self, mcp: MCPServer) -> None:
        # The SDK's documented way to serve handshake-era subscriptions from an MCPServer (migration guide).
        self._sdk_sessions = SdkSessions(mcp)
        server = mcp._lowlevel_server
        server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, self._subscribe)
        server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, self._unsubscribe)
        server.add_request_handler(
            "subscriptions/listen", types.SubscriptionsListenRequestParams, self._listen
        )

    async def _may_watch(self, agent: str, uri: str) -> bool:
        """Whether `agent` may be told about `uri` (the same rules as reading it)."""
        parts = uri.removeprefix("memos://").split("/")
        who = agent_named(agent)
        try:
            if parts == ["cubes"]:
                return True
            if parts[0] == "cubes" and len(parts) == 2:
                await self._services.cubes.describe(who, parts[1])
            elif parts[0] == "memories" and len(parts) in (2, 3) and parts[2:] in ([], ["neighbourhood"]):
                await self._services.memories.get(who, parts[1])
            elif parts[0] == "tasks" and len(parts) == 3 and parts[2] == "context":
                await self._services.tasks.get(who, parts[1])
            elif parts[0] == "agents" and len(parts) == 3:
                return parts[1] == agent and parts[2] in ("context", "working-memory", "tasks")
            else:
                return False
        except MemosError:  # not found, refused or malformed: not yours to watch
            return False
        return True

    async def _refuse_unless_allowed(self, agent: str, uris: list[str]) -> None:
        for uri in uris:
            if not await self._may_watch(agent, uri):
                raise MCPError(
                    types.INVALID_PARAMS, f"Not found: {uri} does not exist or you may not read it"
                )

    async def _subscribe(self, ctx: _Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        agent = current_agent().name
        await self._refuse_unless_allowed(agent, [str(params.uri)])
        key = _session_key(ctx)
        watch = self._sessions.get(key)
        if watch is None or watch.session is not ctx.session:
            watch = self._sessions[key] = _Watch(session=ctx.session, agent=agent)
        watch.uris.add(str(params.uri))
        watch.seen = anyio.current_time()
        self._readable.setdefault(agent, frozenset())
        return types.EmptyResult()

    async def _unsubscribe(self, ctx: _Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        watch = self._sessions.get(_session_key(ctx))
        if watch is not None:
            watch.uris.discard(str(params.uri))
        return types.EmptyResult()

    async def _listen(
        self, ctx: _Ctx, params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        agent = current_agent().name
        await self._refuse_unless_allowed(agent, list(params.notifications.resource_subscriptions or ()))
        self._readable.setdefault(agent, frozenset())
        handler = ListenHandler(_AgentBus(self._listeners[agent]))
        self._streams[agent].add(handler)
        try:
            return await handler(ctx, params)
        finally:
            self._streams[agent].discard(handler)

    async def end_streams(self, agent: str | None = None) -> None:
        """End the long-lived streams (of `agent`, or everyone's): each listen stream gracefully, with its
        final result, and each handshake-era session as a DELETE would, which ends its GET stream. Used when
        an agent's access is taken away, and first thing on shutdown so nothing holds the stop up."""
        for who, handlers in list(self._streams.items()):
            if agent is None or who == agent:
                for handler in list(handlers):
                    handler.close()
        for key in [k for k, w in self._sessions.items() if agent is None or w.agent == agent]:
            del self._sessions[key]
        if self._sdk_sessions is not None:
            closed = await self._sdk_sessions.close_all(agent)
            if closed:
                log.info("closed %d handshake-era session(s)%s", closed, f" of {agent}" if agent else "")

    def _on_change(self, change: Change) -> None:
        if self._queue is not None:
            try:
                self._queue.send_nowait(change)
            except anyio.WouldBlock:
                log.warning("notification queue full: a change notification was dropped")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        send, receive = anyio.create_memory_object_stream[Change](4096)
        self._queue = send
        unsubscribe = self._services.hub.subscribe(self._on_change)
        try:
            with send, receive:
                task_status.started()
                async for change in receive:
                    await retrying("delivering a change notification", partial(self._deliver, change))
        finally:
            unsubscribe()
            self._queue = None

    def _watchers(self) -> set[str]:
        now = anyio.current_time()
        for key in [k for k, w in self._sessions.items() if now - w.seen > self._idle_s]:
            del self._sessions[key]  # the SDK has closed that session by now
        return {w.agent for w in self._sessions.values()} | {a for a, ls in self._listeners.items() if ls}

    async def _readable_now(self, agent: str) -> frozenset[str]:
        return frozenset(await self._services.cubes.readable(agent_named(agent)))

    async def _deliver(self, change: Change) -> None:
        if isinstance(change, AgentRevoked):  # disabled or token rotated: nothing more reaches it
            log.info("agent %s's access was revoked: ending its event streams and sessions", change.agent)
            await self.end_streams(change.agent)
            self._readable.pop(change.agent, None)
        elif isinstance(change, MemoryChanged):
            memory = f"memos://memories/{change.memory_id}"
            uris = [f"memos://cubes/{change.cube}", memory, f"{memory}/neighbourhood"]
            for agent in self._watchers():
                if change.cube in await self._readable_now(agent):
                    await self._tell(agent, [ResourceUpdated(uri) for uri in uris])
        elif isinstance(change, TaskChanged):  # a handoff, or a task moved on: the task lists changed
            for agent in set(change.agents) & self._watchers():
                await self._tell(agent, [ResourceUpdated(f"memos://agents/{agent}/tasks")])
        elif isinstance(change, PackReady):
            if change.agent in self._watchers():
                uris = [f"memos://tasks/{change.task_id}/context", f"memos://agents/{change.agent}/context"]
                await self._tell(change.agent, [ResourceUpdated(uri) for uri in uris])
        elif isinstance(change, CubesChanged):
            for agent in self._watchers():
                readable = await self._readable_now(agent)
                if readable != self._readable.get(agent):
                    self._readable[agent] = readable
                    await self._tell(agent, [ResourcesListChanged(), ResourceUpdated("memos://cubes")])

    async def _tell(self, agent: str, events: Sequence[ServerEvent]) -> None:
        for listener in list(self._listeners.get(agent, ())):
            for event in events:
                listener(event)
        for watch in list(self._sessions.values()):
            if watch.agent != agent:
                continue
            for event in events:
                # A session that has gone away drops these silently (the SDK's behaviour).
                if isinstance(event, ResourceUpdated) and event.uri in watch.uris:
                    await watch.session.send_resource_updated(event.uri)
                elif isinstance(event, ResourcesListChanged):
                    await watch.session.send_resource_list_changed()

    async def preload(self, ctx: _Ctx, call_next: Any) -> Any:
        """Middleware: the first request of an agent in a while gets its open tasks' packs built at once.
        Each request also keeps its session's subscriptions alive."""
        result = await call_next(ctx)
        watch = self._sessions.get(_session_key(ctx))
        if watch is not None:
            watch.seen = anyio.current_time()
        try:
            token = current_agent().name
        except Unauthenticated:  # no agent (an unauthenticated path): nothing to preload
            return result
        now = anyio.current_time()
        if now - self._seen.get(token, -1e9) > 600:
            self._seen[token] = now
            try:
                await self._services.packs.preload_for(token)
            except MemosError as exc:  # a preload that cannot start (queue full) must not fail the request
                log.warning("could not preload context packs for %s: %s", token, exc)
        return result
