"""The stdio bridge behind `memos mcp --agent NAME`.

Desktop hosts launch a stdio server and give it seconds to answer `initialize`, so the bridge answers
from a local low-level `Server` at once and relays each request to the daemon's `/mcp` endpoint. A raw
JSON-RPC pipe would die with the daemon's sessions; instead the upstream is a sessionless modern-era
`Client`, owned by a supervisor task and rebuilt whenever a connection error kills it (SDK issue #915).

The bridge is the same package as the daemon, so it describes memosd from memosd's own definitions (the
`Catalog`: name, version, instructions, tools, resources) without loading a model or opening the store: a
host that starts before memosd lists every tool at once, its calls fail with a clear message until the
daemon is up, and it is sent `list_changed` when the daemon first answers (and whenever what the daemon
lists differs from what it listed before).

When the host closes stdin, requests it already sent are still relayed and answered (for at most `drain`
seconds) before the bridge exits: the SDK's server would cancel them at once and answer "Connection closed",
though a write may already have committed in the daemon.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp.shared._stream_protocols import ReadStream, WriteStream  # the types stdio_server yields
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, METHOD_NOT_FOUND
from mcp_types.version import LATEST_MODERN_VERSION, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from daemon import InvalidInput
from mcp_server.app import Catalog
from mcp_server.argument_errors import check_finite
from mcp_server.errors import tool_error_result

logger = logging.getLogger(__name__)

_R = TypeVar("_R")
DRAIN_S = 30.0  # how long requests in flight when the host closes stdin may still take to be answered
_LONG_LIVED = frozenset({"subscriptions/listen"})  # open until the host leaves: never waited for
_Ctx = ServerRequestContext[Any, Any]
_Page = types.PaginatedRequestParams | None


class BridgeError(MCPError):
    """A failure of the bridge itself (daemon down, token refused), worded for the person reading it."""

    def __init__(self, message: str) -> None:
        super().__init__(INTERNAL_ERROR, message)


class _Link:
    """One incarnation of an upstream client: a connection error kills it, so it is replaced, never reused."""

    def __init__(self) -> None:
        self.client: Client | None = None
        self.up = anyio.Event()  # entered, or failed to enter
        self.retire = anyio.Event()  # a request on it was cut off: stop handing it out
        self.dead = anyio.Event()
        self.cause: BaseException | None = None  # why the client's task group died
        self.refused = False  # the daemon's latest answer on this link was HTTP 401


@dataclass(frozen=True)
class _Listings:
    """What a server lists: the host is served these, never a page of them relayed."""

    tools: list[types.Tool]
    resources: list[types.Resource]
    templates: list[types.ResourceTemplate]
    prompts: list[types.Prompt]

    @classmethod
    async def of_catalog(cls, catalog: Catalog) -> _Listings:
        server = catalog.server
        return cls(
            await server.list_tools(),
            await server.list_resources(),
            await server.list_resource_templates(),
            await server.list_prompts(),
        )

    @classmethod
    async def of_daemon(cls, client: Client) -> _Listings:
        async def every(fetch: Callable[[str | None], Awaitable[Any]], field: str) -> list[Any]:
            items, cursor = [], None
            while True:
                page = await fetch(cursor)
                items += getattr(page, field)
                if not (cursor := page.next_cursor):
                    return items

        return cls(
            await every(lambda cursor: client.list_tools(cursor=cursor), "tools"),
            await every(lambda cursor: client.list_resources(cursor=cursor), "resources"),
            await every(lambda cursor: client.list_resource_templates(cursor=cursor), "resource_templates"),
            await every(lambda cursor: client.list_prompts(cursor=cursor), "prompts"),
        )

    def changes_from(self, before: _Listings) -> list[ServerEvent]:
        """The list_changed events that take a host from `before` to these listings."""
        events: list[ServerEvent] = []
        if self.tools != before.tools:
            events.append(ToolsListChanged())
        if (self.resources, self.templates) != (before.resources, before.templates):
            events.append(ResourcesListChanged())
        if self.prompts != before.prompts:
            events.append(PromptsListChanged())
        return events


def _leaves(exc: BaseException | None) -> Iterator[BaseException]:
    """The leaf exceptions of a (possibly nested) exception group, plus their causes."""
    while exc is not None:
        nested = getattr(exc, "exceptions", None)
        if nested is not None:
            for inner in nested:
                yield from _leaves(inner)
            return
        yield exc
        exc = exc.__cause__


class _Bridge:
    """Request relay, upstream client supervision and subscription fan-in for one stdio host."""

    def __init__(self, url: str, token: str, agent: str, catalog: Catalog) -> None:
        self.url, self.token, self.agent = url, token, agent
        self._catalog = catalog
        self._local: _Listings | None = None  # the catalog's listings, served until the daemon answers
        self._daemon: _Listings | None = None  # what the daemon listed when it last answered
        self._wrong_agent: BridgeError | None = None  # the token is another agent's: refuse every call
        self._identity_known = False  # checked once the daemon answered, before the first call goes up
        self._link = _Link()
        self._host: ServerSession | None = None  # handshake-era host: notifications go to its session
        self._host_uris: set[str] = set()  # handshake-era resources/subscribe
        self._listen_uris: Counter[str] = Counter()  # URIs of the host's open listen streams (modern era)
        self._listening: list[str] = []  # the URIs of the current upstream listen stream
        self._relisten = anyio.CancelScope()
        self._bus = InMemorySubscriptionBus()  # fans upstream events out to the host's modern listen streams
        self._listen_handler = ListenHandler(self._bus)
        self._relaying: set[anyio.CancelScope] = set()  # requests being relayed to the daemon right now

    # -- upstream -------------------------------------------------------------------------------
    @asynccontextmanager
    async def _open(self, link: _Link) -> AsyncIterator[Client]:
        """A modern-era client: pinning the version means entering it touches no network (no probe)."""

        async def on_response(response: httpx2.Response) -> None:
            # The SDK reports a 401 only as INTERNAL_ERROR, so remember the status where we can see it.
            if response.status_code == 401:
                link.refused = True
            elif response.is_success:
                link.refused = False

        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=httpx2.Timeout(30.0, connect=5.0, read=300.0),
            event_hooks={"response": [on_response]},
        )
        transport = streamable_http_client(self.url, http_client=http, terminate_on_close=False)
        async with http, Client(transport, mode=LATEST_MODERN_VERSION, cache=None) as client:
            yield client

    async def supervise(self) -> None:
        """Own the shared upstream client, and replace it each time its task group dies."""
        while True:
            link = self._link
            try:
                async with self._open(link) as client:
                    link.client = client
                    link.up.set()
                    await link.retire.wait()
            except Exception as exc:  # the client's own task group failed: keep why, for the caller
                link.cause = exc
                logger.debug("upstream client closed", exc_info=True)
            finally:
                was_up, link.client = link.client is not None, None
                link.up.set()
                link.dead.set()
            self._link = _Link()
            if not was_up:  # could not even build a client: do not spin
                await anyio.sleep(1.0)

    def _unreachable(self) -> BridgeError:
        return BridgeError(f"memos daemon is not reachable at {self.url}: start it with `memosd`")

    def _refused(self) -> BridgeError:
        return BridgeError(
            f"the daemon refused agent {self.agent}'s token: run `memos agent rotate-token {self.agent}` "
            f"and update this MCP server's configuration (or re-enable the agent)"
        )

    @staticmethod
    def _never_sent(cause: BaseException | None) -> bool:
        """The connection was refused: the request never reached the daemon, so it is safe to send again."""
        return any(isinstance(e, (httpx2.ConnectError, httpx2.ConnectTimeout)) for e in _leaves(cause))

    def _failure(self, cause: BaseException | None, write: str | None) -> BridgeError:
        """Name what went wrong: the daemon was never reached, or was lost mid-request."""
        if self._never_sent(cause):
            return self._unreachable()
        if write is None:
            return BridgeError(f"lost the connection to the memos daemon at {self.url}; try again")
        return BridgeError(
            f"lost the connection to the memos daemon at {self.url} during {write}: it may or may not "
            f"have run, so check before calling it again"
        )

    async def _relay(
        self, op: Callable[[Client], Awaitable[_R]], *, write: str | None = None, attempts: int = 2
    ) -> _R:
        """Run `op` on the live client, again on a fresh client if an attempt failed. A write without an
        idempotency key is tried again only when the daemon was never reached (a restarted daemon leaves
        stale connections); with one, `attempts` times over a few seconds, so a restart in the middle of
        it is ridden out."""
        failure = self._unreachable()
        for attempt in range(attempts):
            if attempt >= 2:
                await anyio.sleep(0.5 * attempt)  # the daemon may be restarting: give it a moment
            link = self._link
            await link.up.wait()
            if link.client is None:
                failure = self._failure(link.cause, None)
                continue
            try:
                return await self._abandonable(op(link.client))
            except BridgeError:
                raise
            except MCPError as err:
                if err.code == INTERNAL_ERROR and link.refused:
                    raise self._refused() from None
                if err.code != CONNECTION_CLOSED:
                    raise  # the daemon's own answer: relay it as is
                # Transport failure. If it killed the client, the supervisor records why just after we
                # hear. Retire the client either way: a failed notification POST ends its writer but
                # not its task group, leaving a client that answers "Connection closed" forever.
                with anyio.move_on_after(1.0):
                    await link.dead.wait()
                link.retire.set()
                with anyio.move_on_after(5.0):
                    await link.dead.wait()
                failure = self._failure(link.cause, write)
                if write is not None and not self._never_sent(link.cause):
                    break
        raise failure

    async def _abandonable(self, request: Awaitable[_R]) -> _R:
        """`request`, unless `abandon` is called first (the host has left and the drain time is up)."""
        with anyio.CancelScope() as scope:
            self._relaying.add(scope)
            try:
                return await request
            finally:
                self._relaying.discard(scope)
        raise BridgeError(
            "the host closed the connection and the memos daemon did not answer in time: a write may or may"
            " not have run, so check before calling it again"
        )

    def abandon(self) -> None:
        """Give up every request still being relayed: each is answered with an error saying so."""
        for scope in self._relaying:
            scope.cancel()

    # -- host-facing handlers ---------------------------------------------------------------------
    async def note_host(self, ctx: _Ctx, call_next: CallNext) -> HandlerResult:
        """Middleware: remember a handshake-era host's session, the only way to notify it."""
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._host = ctx.session
        return await call_next(ctx)

    async def listings(self) -> _Listings:
        """The daemon's listings once it has answered; until then the same, built in-process."""
        if self._daemon is not None:
            return self._daemon
        if self._local is None:
            self._local = await _Listings.of_catalog(self._catalog)
        return self._local

    async def list_tools(self, ctx: _Ctx, params: _Page) -> types.ListToolsResult:
        return types.ListToolsResult(tools=(await self.listings()).tools)

    async def list_resources(self, ctx: _Ctx, params: _Page) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=(await self.listings()).resources)

    async def list_resource_templates(self, ctx: _Ctx, params: _Page) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=(await self.listings()).templates)

    async def list_prompts(self, ctx: _Ctx, params: _Page) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=(await self.listings()).prompts)

    async def _daemon_answered(self, client: Client) -> None:
        """The daemon answered: serve its listings from now on. The host is told the tools and resources
        changed the first time (it may have listed before the daemon was up), then whenever a list differs."""
        first, before = self._daemon is None, await self.listings()
        self._daemon = fresh = await _Listings.of_daemon(client)
        await self._check_identity(client)
        kinds = {type(event) for event in fresh.changes_from(before)}
        if first:
            kinds |= {ToolsListChanged, ResourcesListChanged}
        for kind in (ToolsListChanged, ResourcesListChanged, PromptsListChanged):
            if kind in kinds:
                await self._emit(kind())

    async def _check_identity(self, client: Client) -> None:
        """The token decides who the bridge speaks for, not `--agent`: if they disagree, writes would land
        in another agent's cube, so every call is refused, saying how to mend the host's configuration."""
        listed = await client.session.send_request(
            types.CallToolRequest(params=types.CallToolRequestParams(name="cube_list", arguments={})),
            types.CallToolResult,
        )
        home = (listed.structured_content or {}).get("home_cube") if not listed.is_error else None
        self._identity_known = home is not None
        if home is None or home == f"@{self.agent}":
            self._wrong_agent = None
            return
        owner = str(home).removeprefix("@")
        self._wrong_agent = BridgeError(
            f"`memos mcp --agent {self.agent}` was given agent {owner}'s token: give it {self.agent}'s token"
            f" (`memos connect` or `memos agent rotate-token {self.agent}`), or start it with --agent {owner}"
        )
        logger.error("%s", self._wrong_agent.message)

    async def _takes_key(self, tool: str, arguments: dict[str, Any]) -> bool:
        """Whether to add an idempotency key: only to a tool that takes one, and for a tool memosd defines,
        only to arguments its argument model accepts. A call memosd refuses then reaches it exactly as the
        host sent it, so the error reads as it does over HTTP and never shows a key the host did not send."""
        listed = {t.name: t for t in (await self.listings()).tools}.get(tool)
        if listed is None or "idempotency_key" not in (listed.input_schema or {}).get("properties", {}):
            return False
        if (definition := self._catalog.tools.get(tool)) is not None:
            try:
                definition.fn_metadata.validate_arguments(arguments)
            except ValidationError:
                return False
        return True

    async def call_tool(self, ctx: _Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        """Relay one call. A write is re-sent after a lost connection only when it carries an idempotency key,
        which the bridge adds to every tool that takes one: the daemon then runs it at most once. Our own
        failures become tool errors so the model reads them."""
        arguments = dict(params.arguments or {})
        if not self._identity_known:
            try:
                await self._relay(self._check_identity)
            except BridgeError as err:
                return types.CallToolResult(
                    content=[types.TextContent(type="text", text=err.message)], is_error=True
                )
        if self._wrong_agent is not None:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=self._wrong_agent.message)], is_error=True
            )
        try:
            check_finite(arguments)  # the SDK client below would send Infinity and NaN as null
        except InvalidInput as exc:
            return tool_error_result(exc)
        try:
            keyed = "idempotency_key" in arguments
            if not keyed and await self._takes_key(params.name, arguments):
                arguments["idempotency_key"] = f"bridge-{secrets.token_hex(12)}"
                keyed = True
            request = types.CallToolRequest(
                params=types.CallToolRequestParams(name=params.name, arguments=arguments)
            )
            # session.send_request, not Client.call_tool: no output-schema revalidation, nor a listing
            # fetched after the write has already run; the host validates what it receives.
            return await self._relay(
                lambda c: c.session.send_request(request, types.CallToolResult),
                write=None if keyed else f"`{params.name}`",
                attempts=5 if keyed else 2,
            )
        except BridgeError as err:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=err.message)], is_error=True
            )

    async def read_resource(
        self, ctx: _Ctx, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        if self._wrong_agent is not None:
            raise self._wrong_agent
        return await self._relay(lambda c: c.read_resource(str(params.uri)))

    async def get_prompt(self, ctx: _Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        return await self._relay(lambda c: c.get_prompt(params.name, params.arguments))

    # -- subscriptions ----------------------------------------------------------------------------
    def _wanted(self) -> list[str]:
        return sorted(self._host_uris | {uri for uri, n in self._listen_uris.items() if n > 0})

    def _rewant(self) -> None:
        """The host's subscriptions changed: make the upstream listen stream follow, at once."""
        if self._wanted() != self._listening:
            self._relisten.cancel()

    async def subscribe(self, ctx: _Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        self._host_uris.add(str(params.uri))
        self._rewant()
        return types.EmptyResult()

    async def unsubscribe(self, ctx: _Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        self._host_uris.discard(str(params.uri))
        self._rewant()
        return types.EmptyResult()

    async def listen(
        self, ctx: _Ctx, params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """A modern-era host's listen stream: served locally, its URIs added to the upstream filter."""
        uris = list(params.notifications.resource_subscriptions or ())
        self._listen_uris.update(uris)
        self._rewant()
        try:
            return await self._listen_handler(ctx, params)
        finally:
            self._listen_uris.subtract(uris)
            self._rewant()

    async def _emit(self, event: ServerEvent) -> None:
        """Re-emit one upstream event to the host, in whichever era it speaks."""
        await self._bus.publish(event)  # the host's modern listen streams, filtered by the handler
        if (host := self._host) is None:
            return
        try:
            if isinstance(event, ResourceUpdated):
                if event.uri in self._host_uris:
                    await host.send_resource_updated(event.uri)
            elif isinstance(event, ResourcesListChanged):
                await host.send_resource_list_changed()
            elif isinstance(event, ToolsListChanged):
                await host.send_tool_list_changed()
            elif isinstance(event, PromptsListChanged):
                await host.send_prompt_list_changed()
        except Exception:  # a host that went away must not stop the relay
            logger.debug("could not forward %r to the host", event, exc_info=True)

    async def listen_upstream(self) -> None:
        """Hold one upstream listen stream for the union of the host's subscriptions.

        It has its own client, so a dropped stream never disturbs an in-flight call. There is no replay:
        after a loss the host is told that everything it watches may have changed.
        """
        delay, lost, warned = 0.5, False, False
        while True:
            self._listening, link, established = self._wanted(), _Link(), False
            with anyio.CancelScope() as self._relisten:  # cancelled when the wanted URIs change
                try:
                    async with (
                        self._open(link) as client,
                        client.listen(
                            tools_list_changed=True,
                            prompts_list_changed=True,
                            resources_list_changed=True,
                            resource_subscriptions=self._listening,
                        ) as sub,
                    ):
                        established, delay, warned = True, 0.5, False
                        await self._daemon_answered(client)
                        if lost:
                            lost = False
                            missed: list[ServerEvent] = [ResourcesListChanged()]
                            for event in missed + [ResourceUpdated(u) for u in self._listening]:
                                await self._emit(event)
                        async for event in sub:
                            if isinstance(
                                event, (ToolsListChanged, ResourcesListChanged, PromptsListChanged)
                            ):
                                self._daemon = await _Listings.of_daemon(client)
                            await self._emit(event)
                except Exception as exc:  # the client wraps what it raises in (nested) exception groups
                    if METHOD_NOT_FOUND in {e.code for e in _leaves(exc) if isinstance(e, MCPError)}:
                        logger.info("the daemon does not serve subscriptions/listen: no notifications")
                        return
                    if link.refused and not warned:
                        warned = True
                        logger.warning("%s", self._refused().message)
                    logger.debug("upstream listen stream ended", exc_info=True)
                lost = lost or established  # it dropped: events may have been missed
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)


class _HostPipe:
    """The host's stdio as the server sees it, with the host's end of input held back until every request it
    sent has been answered: the server cancels what is in flight when its input ends. After `drain` seconds
    the bridge gives up what is left (answered with an error), and the input ends a moment later."""

    def __init__(
        self,
        host_read: ReadStream[SessionMessage | Exception],
        host_write: WriteStream[SessionMessage],
        abandon: Callable[[], None],
        drain: float,
    ) -> None:
        self._host_read, self._host_write = host_read, host_write
        self._abandon, self._drain = abandon, drain
        self._to_server, self.server_read = anyio.create_memory_object_stream[SessionMessage | Exception]()
        self.server_write, self._from_server = anyio.create_memory_object_stream[SessionMessage]()
        self._pending: set[types.RequestId] = set()  # the host's requests not answered yet
        self._answered = anyio.Event()  # set when the last pending request is answered
        self._reading = anyio.CancelScope()

    async def inbound(self) -> None:
        """Host to server; at the host's end of input, wait for the pending answers, then end the server's."""
        async with self._to_server:
            with self._reading:
                async for item in self._host_read:
                    if isinstance(item, SessionMessage):
                        self._note(item.message)
                    await self._to_server.send(item)
            self._answered = anyio.Event()
            if self._reading.cancel_called or not self._pending:
                return  # the server ended by itself, or nothing is in flight
            with anyio.move_on_after(self._drain):
                await self._answered.wait()
            if self._pending:
                logger.warning(
                    "%d requests still unanswered %.0f s after stdin closed", len(self._pending), self._drain
                )
                self._abandon()
                with anyio.move_on_after(5.0):  # for their error answers to be written
                    await self._answered.wait()

    def _note(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCRequest) and message.method not in _LONG_LIVED:
            self._pending.add(message.id)
        elif isinstance(message, types.JSONRPCNotification) and message.method == "notifications/cancelled":
            cancelled = (message.params or {}).get("requestId")
            self._pending.discard(cancelled)  # the server never answers a request its host cancelled

    async def outbound(self) -> None:
        """Server to host, noting each answer; ends when the server closes its side."""
        async with self._host_write, self._from_server:
            async for item in self._from_server:
                await self._host_write.send(item)
                if isinstance(item.message, (types.JSONRPCResponse, types.JSONRPCError)):
                    self._pending.discard(item.message.id)  # type: ignore[arg-type]
                    if not self._pending:
                        self._answered.set()

    def stop_reading(self) -> None:
        self._reading.cancel()


def _build_server(bridge: _Bridge, catalog: Catalog) -> Server[Any]:
    """The host-facing server, introduced as memosd introduces itself: the lists are served by the bridge,
    everything else relays; nothing waits for the daemon."""
    server: Server[Any] = Server(
        catalog.server.name,
        version=catalog.server.version,
        instructions=catalog.server.instructions,
        on_list_tools=bridge.list_tools,
        on_call_tool=bridge.call_tool,
        on_list_resources=bridge.list_resources,
        on_list_resource_templates=bridge.list_resource_templates,
        on_read_resource=bridge.read_resource,
        on_subscribe_resource=bridge.subscribe,
        on_unsubscribe_resource=bridge.unsubscribe,
        on_subscriptions_listen=bridge.listen,
        on_list_prompts=bridge.list_prompts,
        on_get_prompt=bridge.get_prompt,
    )
    server.middleware.append(bridge.note_host)
    return server


async def run_bridge(
    url: str,
    token: str,
    agent: str,
    catalog: Catalog,
    *,
    stdin: anyio.AsyncFile[str] | None = None,
    stdout: anyio.AsyncFile[str] | None = None,
    drain: float = DRAIN_S,
) -> None:
    """Serve MCP on stdio for `agent`, relayed to the daemon at `url`, until the host closes stdin and what
    it sent before has been answered (or `drain` seconds have passed)."""
    bridge = _Bridge(url, token, agent, catalog)
    server = _build_server(bridge, catalog)
    options = server.create_initialization_options(
        NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
    )
    async with stdio_server(stdin, stdout) as (read_stream, write_stream), anyio.create_task_group() as tg:
        tg.start_soon(bridge.supervise)
        tg.start_soon(bridge.listen_upstream)
        pipe = _HostPipe(read_stream, write_stream, bridge.abandon, drain)
        async with anyio.create_task_group() as relay:
            relay.start_soon(pipe.outbound)  # ends once the server has written its last answer
            relay.start_soon(pipe.inbound)
            await server.run(pipe.server_read, pipe.server_write, options)
            pipe.stop_reading()  # the server ended by itself: stop waiting for the host
        tg.cancel_scope.cancel()
