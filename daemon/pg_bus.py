"""What the daemons on one PostgreSQL database tell each other, by LISTEN/NOTIFY.

Each memosd on a shared database runs one `PgBus`. It relays the change events its own writes publish
(daemon/events.py: a memory changed, a task, a grant, an agent revoked, a pack ready) to the other daemons on
the `memos_changes` channel, and publishes theirs on its own hub, so an agent hears of a change whichever
daemon it is connected to, and its pack is rebuilt by whichever daemon serves it. New vectors arrive on
`memos_vectors`: the vector cache then reads them from the table (`PgVectorIndex.catch_up`), and also
every few seconds in case a notification was missed while the connection was down.

NOTIFY is sent at commit, by the server: no daemon hears of a change before it is in the database.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import msgspec
import psycopg
from anyio.abc import TaskStatus

from daemon.events import AgentRevoked, Change, ChangeHub, CubesChanged, MemoryChanged, PackReady, TaskChanged
from daemon.pg_errors import translated
from daemon.pg_store import connect
from daemon.pg_vectors import VECTORS_CHANNEL, PgVectorIndex
from daemon.supervision import retrying

log = logging.getLogger(__name__)

CHANGES_CHANNEL = "memos_changes"
_FOLLOW_EVERY_S = 5.0
_KINDS: dict[str, type[Any]] = {
    "memory": MemoryChanged,
    "task": TaskChanged,
    "pack": PackReady,
    "cubes": CubesChanged,
    "revoked": AgentRevoked,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}


class _Envelope(msgspec.Struct, frozen=True):
    kind: str
    change: msgspec.Raw


def encode(change: Change) -> str:
    body = msgspec.json.encode(change)
    return msgspec.json.encode(_Envelope(_NAMES[type(change)], msgspec.Raw(body))).decode()


def decode(payload: str) -> Change:
    envelope = msgspec.json.decode(payload, type=_Envelope)
    change: Change = msgspec.json.decode(envelope.change, type=_KINDS[envelope.kind])
    return change


class PgBus:
    def __init__(self, url: str, hub: ChangeHub, vectors: PgVectorIndex) -> None:
        self._url = url
        self._hub = hub
        self._vectors = vectors
        self._relaying = False  # publishing another daemon's change: not to be sent back out
        self._outgoing_send, self._outgoing = anyio.create_memory_object_stream[Change](1000)
        self._senders: set[int] = set()  # backend pids of this daemon's sending connections: its own news

    def _local(self, change: Change) -> None:
        if self._relaying:
            return
        try:
            self._outgoing_send.send_nowait(change)
        except anyio.WouldBlock:  # the server is unreachable and the queue full: the oldest news is lost
            log.warning("dropping a change notification for the other daemons (the database is unreachable)")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Relay changes both ways and follow the vectors until cancelled."""
        unsubscribe = self._hub.subscribe(self._local)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(retrying, "sending changes to the other daemons", self._send)
                await tg.start(self._listen_supervised)
                task_status.started()
        finally:
            unsubscribe()
            self._outgoing_send.close()
            self._outgoing.close()

    async def _listen_supervised(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        started = False

        async def listen() -> None:
            nonlocal started
            conn = await connect(self._url)
            try:
                with translated():
                    await conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    await conn.execute(f"LISTEN {VECTORS_CHANNEL}")
                if not started:
                    started = True
                    task_status.started()
                await self._vectors.catch_up()
                while True:
                    # Each notification as it comes; after a quiet spell, a look at the vectors anyway.
                    with translated():
                        async for notice in conn.notifies(timeout=_FOLLOW_EVERY_S):
                            if notice.channel == VECTORS_CHANNEL:
                                await self._vectors.catch_up()
                            else:
                                self._received(notice)
                    await self._vectors.catch_up()
            finally:
                with anyio.CancelScope(shield=True):
                    await conn.close()

        await retrying("listening to the other daemons", listen)

    def _received(self, notice: psycopg.Notify) -> None:
        """Publish another daemon's change on this daemon's hub (this daemon's own come back too: skipped)."""
        if notice.channel != CHANGES_CHANNEL or notice.pid in self._senders:
            return
        try:
            change = decode(notice.payload)
        except (msgspec.DecodeError, KeyError) as exc:  # a newer memos on the database: skip, say so
            log.warning("ignoring a change notification this memos cannot read: %s", exc)
            return
        self._relaying = True
        try:
            self._hub.publish(change)
        finally:
            self._relaying = False

    async def _send(self) -> None:
        conn = await connect(self._url)
        self._senders = {*self._senders, conn.info.backend_pid}
        try:
            async for change in self._outgoing:
                with translated():
                    await conn.execute("SELECT pg_notify(%s, %s)", [CHANGES_CHANNEL, encode(change)])
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close()
