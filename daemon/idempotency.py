"""Idempotent writes: a retry with the same key from the same agent returns the first result, writes nothing.

The key is recorded in the same transaction as the write it guards, so the two commit together or not at
all, also across a crash. Two concurrent calls with one key race on the table's primary key: the loser's
transaction rolls back and it returns the winner's stored result. Reusing a key for different arguments is
refused. Keys are kept for a week.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import msgspec

from daemon.errors import Conflict, InvalidInput
from daemon.models import Agent
from daemon.rows import Row
from daemon.store import Connection, Store
from daemon.timeutil import format_time, now_iso

T = TypeVar("T", bound=msgspec.Struct)
KEEP_DAYS = 7
MAX_KEY_CHARS = 200


class Recorder:
    """Handed to a write: `await recorder.record(conn, result)` inside the write's own transaction."""

    def __init__(self, agent: str, key: str, tool: str, fingerprint: str) -> None:
        self.agent, self.key, self.tool, self.fingerprint = agent, key, tool, fingerprint

    async def record(self, conn: Connection, result: msgspec.Struct) -> None:
        await conn.execute(
            "INSERT INTO idempotency (agent, key, tool, fingerprint, result, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                self.agent,
                self.key,
                self.tool,
                self.fingerprint,
                msgspec.json.encode(result).decode(),
                now_iso(),
            ),
        )


async def _stored(store: Store, agent: str, key: str) -> Row | None:
    async with store.read() as conn:
        return await conn.row(
            "SELECT tool, fingerprint, result FROM idempotency WHERE agent = ? AND key = ?", (agent, key)
        )


def _replay(stored: Row, tool: str, fingerprint: str, key: str, result_type: type[T]) -> T:
    if stored["tool"] != tool or stored["fingerprint"] != fingerprint:
        raise Conflict(
            f"idempotency_key {key!r} was already used for a different call ({stored['tool']}); use a new key"
        )
    return msgspec.json.decode(stored["result"], type=result_type)


async def idempotent(
    store: Store,
    agent: Agent,
    key: str | None,
    tool: str,
    arguments: Any,
    result_type: type[T],
    write: Callable[[Recorder | None], Awaitable[T]],
) -> T:
    """Run `write` once per (agent, key); `write` must call `recorder.record` in its transaction."""
    if key is None:
        return await write(None)
    if not key.strip() or len(key) > MAX_KEY_CHARS:
        raise InvalidInput(f"idempotency_key must be 1-{MAX_KEY_CHARS} characters")
    fingerprint = hashlib.sha256(msgspec.json.encode([tool, arguments])).hexdigest()
    stored = await _stored(store, agent.name, key)
    if stored is not None:
        return _replay(stored, tool, fingerprint, key, result_type)
    try:
        return await write(Recorder(agent.name, key, tool, fingerprint))
    except Conflict:
        stored = await _stored(store, agent.name, key)  # a concurrent call with this key won the race
        if stored is None:
            raise
        return _replay(stored, tool, fingerprint, key, result_type)


async def forget_old_keys(store: Store) -> None:
    async with store.write() as conn:
        cutoff = format_time(datetime.now(timezone.utc) - timedelta(days=KEEP_DAYS))  # in either dialect
        await conn.execute("DELETE FROM idempotency WHERE created_at < ?", (cutoff,))
