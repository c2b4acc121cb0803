"""Serve the MCP app with uvicorn inside the daemon's task group.

uvicorn's own signal handling is switched off (the daemon owns signals) and so is its lifespan (we enter the
SDK's session manager ourselves: it may be entered only once). The listening socket is bound before uvicorn
starts, so "port in use" is our error with our words, not uvicorn's `sys.exit`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Iterator

import anyio
import uvicorn
from anyio.abc import TaskStatus
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette

from daemon import ConfigError
from daemon.config import ServerConfig

log = logging.getLogger(__name__)


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
        self._server = _Server(
            uvicorn.Config(
                app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=5
            )
        )

    def stop(self) -> None:
        """Stop accepting connections and finish open requests (uvicorn's graceful shutdown)."""
        self._server.should_exit = True

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until `stop()`; `stopped` is set once open requests and sessions are finished."""
        try:
            async with self._mcp.session_manager.run(), anyio.create_task_group() as tg:
                tg.start_soon(self._run_uvicorn)
                while not self._server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                    await anyio.sleep(0.01)
                log.info("MCP endpoint listening on http://%s:%d/mcp", self._config.host, self.port)
                task_status.started()
        finally:
            self.stopped.set()

    async def _run_uvicorn(self) -> None:
        try:
            await self._server.serve(sockets=[self._sock])
        finally:
            self._sock.close()
