"""The systemd notify protocol: datagrams of `KEY=value` lines to the socket named by $NOTIFY_SOCKET.

READY=1 once the store is open and the endpoint listens, STATUS= lines as the state changes, STOPPING=1 when
shutdown begins, and WATCHDOG=1 pings sent from the event loop itself, so a hung loop stops pinging and
systemd restarts the service. Without $NOTIFY_SOCKET (not under systemd) every call does nothing.
"""

from __future__ import annotations

import logging
import socket

import anyio
from anyio.abc import TaskStatus

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, socket_path: str | None, watchdog_usec: int | None = None) -> None:
        self._address = socket_path
        if socket_path and socket_path.startswith("@"):  # an abstract socket
            self._address = "\0" + socket_path[1:]
        self.watchdog_interval = watchdog_usec / 2_000_000 if watchdog_usec else None  # ping twice per period

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> None:
        if not self._address:
            return
        message = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:  # systemd went away or the socket is wrong: the daemon keeps serving
            log.warning("cannot notify systemd at %s: %s", self._address.lstrip("\0"), exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    async def watchdog(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Ping while the event loop runs; returns at once when no watchdog is configured."""
        task_status.started()
        if self.watchdog_interval is None or not self.enabled:
            return
        while True:
            self.send("WATCHDOG=1")
            await anyio.sleep(self.watchdog_interval)
