"""Serve the MCP app with uvicorn inside the daemon's task group.

uvicorn's own signal handling is switched off (the daemon owns signals) and so is its lifespan (we enter the
SDK's session manager ourselves: it may be entered only once). HTTP/1.1 is parsed by httptools (in C; h11,
in Python, was a fifth of a small tool call's CPU, issue 17), with deadlines for slow clients (`[server]
client_timeout_s`) and h11's bound on a request head. The listening socket is bound before uvicorn starts, so "port in use"
is our error with our words, not uvicorn's `sys.exit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable, Iterator

import anyio
import uvicorn
from anyio.abc import TaskStatus
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from daemon import ConfigError, ServerConfig
from mcp_server.connections import accept_backlog, bounded_protocol, connection_budget, open_files_limit

log = logging.getLogger(__name__)


MAX_HEAD_BYTES = 16 * 1024  # h11's bound on a request head (uvicorn's h11_max_incomplete_event_size)


class _DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with deadlines against slow clients (slowloris) and a bounded head.

    uvicorn waits for a request's head and body as long as the client keeps the connection open, and for a
    client to take a response as long as it likes. Here a whole request must arrive within `timeout_s` of
    the connection opening or the previous response ending, and a response that cannot be written (the
    client stopped reading and the buffers are full) gets as long; otherwise the connection is closed.
    A request that has fully arrived may take as long as it needs (a tool call, a GET event stream). A request
    head over `MAX_HEAD_BYTES` gets 400 (httptools itself would buffer a head of any size).
    """

    timeout_s: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._read_deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._head_bytes: int | None = 0  # bytes of the head being received; None in a body
        self._boundary = False  # a head or a request ended in the data being parsed
        super().connection_made(transport)
        self._await_request()

    def data_received(self, data: bytes) -> None:
        self._boundary = False
        super().data_received(data)
        # Counted only when the data lay wholly inside one head (no head or request ended in it), so a large
        # body in the same data is never taken for a head; a head may run one read's worth over the bound.
        if self._head_bytes is not None and not self._boundary:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                log.warning(
                    "closing a connection from %s: request head over %d bytes", self.client, MAX_HEAD_BYTES
                )
                self.send_400_response("Invalid HTTP request received.")

    def on_headers_complete(self) -> None:
        self._boundary, self._head_bytes = True, None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._boundary, self._head_bytes = True, 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_request()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(self.timeout_s, self._response_not_taken)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        for deadline in (self._read_deadline, self._write_deadline):
            if deadline is not None:
                deadline.cancel()
        super().connection_lost(exc)

    def _await_request(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
        self._read_deadline = self.loop.call_later(self.timeout_s, self._request_not_received)

    def _request_not_received(self) -> None:
        self._read_deadline = None
        answering = self.cycle is not None and not self.cycle.more_body and not self.cycle.response_complete
        if self.transport.is_closing() or answering:
            return  # closed already, or the request is in and being answered
        log.warning("closing a connection from %s: no whole request within %g s", self.client, self.timeout_s)
        self.transport.close()

    def _response_not_taken(self) -> None:
        self._write_deadline = None
        if not self.transport.is_closing():
            log.warning(
                "closing a connection from %s: response not read for %g s", self.client, self.timeout_s
            )
        self.transport.abort()  # close() would wait for the unread data to be written


def deadline_protocol(timeout_s: float) -> type[_DeadlineProtocol]:
    """The protocol class for uvicorn (it takes a class, not an instance), with this deadline."""
    return type("DeadlineProtocol", (_DeadlineProtocol,), {"timeout_s": timeout_s})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon handles SIGINT/SIGTERM itself


def bind(config: ServerConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns on TCP_NODELAY only for sockets that say so, and without it
    # every response written in two parts waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {config.port} on {config.host} is already in use (is another memosd running?);"
                " stop it or set [server] port in memos.toml"
            ) from exc
        raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


class HttpServer:
    """The MCP endpoint. `await tg.start(server.serve)` returns once it accepts connections."""

    def __init__(self, mcp: MCPServer, app: Starlette, config: ServerConfig) -> None:
        self._mcp = mcp
        self._config = config
        self._sock = bind(config)
        self.port = self._sock.getsockname()[1]
        self.stopped = anyio.Event()
        # Bounded below the open-files limit (raised to the hard limit by memosd at start).
        fd_limit = open_files_limit()
        self.max_connections = connection_budget(config.max_connections, fd_limit)
        self.on_stop: list[Callable[[], None]] = []  # run by stop(): end long-lived responses (event streams)
        self._server = _Server(
            uvicorn.Config(
                app,
                http=bounded_protocol(deadline_protocol(config.client_timeout_s), self.max_connections),
                lifespan="off",
                backlog=accept_backlog(fd_limit),
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=5,
            )
        )

    def stop(self) -> None:
        """Stop accepting connections and finish open requests (uvicorn's graceful shutdown)."""
        self._server.should_exit = True
        for stop in self.on_stop:
            stop()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until `stop()`; `stopped` is set once open requests and sessions are finished."""
        try:
            async with self._mcp.session_manager.run(), anyio.create_task_group() as tg:
                tg.start_soon(self._run_uvicorn)
                while not self._server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                    await anyio.sleep(0.01)
                log.info(
                    "MCP endpoint listening on http://%s:%d/mcp (at most %d connections)",
                    self._config.host, self.port, self.max_connections,
                )  # fmt: skip
                task_status.started()
        finally:
            self.stopped.set()

    async def _run_uvicorn(self) -> None:
        try:
            await self._server.serve(sockets=[self._sock])
        finally:
            self._sock.close()
