"""Connections bounded below the open-files limit, so a flood of idle connections cannot exhaust it.

Each connection costs a file descriptor. Without a bound, a client (no token needed: the connection comes
before any request) that opens more connections than the limit allows makes every `accept` fail, and then
nobody is served, not even `/healthz`. So memosd raises its soft open-files limit to the hard one at start,
keeps a reserve for the database, backups and the model, and serves at most `[server] max_connections` at
a time (default: the limit less the reserve). A connection over the bound costs one accept and one close:
the oldest connection that is not in a request (it has sent nothing yet, or is idle between requests) is
closed to make room, or, when every connection is in a request, the new one is.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

# Descriptors kept for SQLite (about 3 per connection), backups, the model, logs and the listener: memosd
# uses about 22 when idle.
MIN_RESERVE = 48


def accept_backlog(fd_limit: int) -> int:
    """The kernel's queue of connections not yet accepted, which asyncio also takes as how many it accepts
    per wake-up. Accepted sockets reach the bound two loop iterations later, and an aborted one is closed one
    iteration after, so three times this many descriptors are kept in reserve: a small limit gets a short
    queue, a usual one uvicorn's 2048, so a burst of connections is queued instead of dropped (a dropped SYN
    costs the client a 1 s retransmit)."""
    return min(2048, max(32, fd_limit // 16))


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard one (a process may); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, exc)
    return open_files_limit()


def open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_budget(configured: int | None, fd_limit: int) -> int:
    """Connections to serve at once: `configured` if given and affordable, else what the limit allows."""
    ceiling = max(8, fd_limit - max(MIN_RESERVE, fd_limit // 8) - 3 * accept_backlog(fd_limit))
    if configured is not None and configured > ceiling:
        log.warning(
            "[server] max_connections = %d is more than the open-files limit (%d) allows; serving %d",
            configured, fd_limit, ceiling,
        )  # fmt: skip
        return ceiling
    return configured or ceiling


class _BoundedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol that makes room, or refuses, once `max_connections` are open."""

    max_connections: int = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._opened_at = self.loop.time()
        if len(self.connections) <= self.max_connections:
            return
        victim = _oldest_idle(self.connections, self)
        if victim is None:
            log.warning("connection limit (%d) reached: refusing a new connection", self.max_connections)
            self.transport.abort()
        else:
            log.warning(
                "connection limit (%d) reached: closing the oldest idle connection", self.max_connections
            )
            victim.transport.abort()


def _oldest_idle(connections: set[Any], newcomer: HttpToolsProtocol) -> HttpToolsProtocol | None:
    """The longest-open connection not in a request and not closing already (never the newcomer)."""
    idle = [
        c
        for c in connections
        if c is not newcomer
        and not c.transport.is_closing()
        and (c.cycle is None or c.cycle.response_complete)
    ]
    return min(idle, key=lambda c: getattr(c, "_opened_at", 0.0), default=None)


def bounded_protocol(base: type[HttpToolsProtocol], max_connections: int) -> type[HttpToolsProtocol]:
    """`base` (a protocol class for uvicorn) with the connection bound."""
    return type("BoundedProtocol", (_BoundedProtocol, base), {"max_connections": max_connections})
