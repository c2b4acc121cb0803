"""Agents and their bearer tokens. A token is shown once; only its SHA-256 is stored.

Tokens carry 256 random bits, so a plain hash is as strong as a slow one here, and lookup by hash means the
secret itself is never compared byte by byte.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time

import anyio
from anyio.abc import TaskStatus

from daemon.errors import Conflict, MemosError, NotFound, Unauthenticated
from daemon.events import AgentRevoked, ChangeHub
from daemon.models import Agent, AgentInfo
from daemon.store import Connection, Store
from daemon.supervision import retrying
from daemon.timeutil import now_iso
from daemon.validation import check_name, private_cube_of

log = logging.getLogger(__name__)

TOKEN_PREFIX = "memos_"
_LAST_SEEN_INTERVAL_S = 60.0  # write last_seen_at at most this often per agent


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def agent_named(name: str) -> Agent:
    """The identity of an authenticated agent, with its private cube."""
    return Agent(name=name, home_cube=private_cube_of(name))


class Identities:
    """Creates agents (with their private cube) and turns tokens into agent identities."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._last_seen_written: dict[str, float] = {}

    async def add(self, name: str) -> tuple[AgentInfo, str]:
        """Create an agent and its private cube `@name`; returns the info and the token (shown once)."""
        check_name(name, "agent name")
        token, created = new_token(), now_iso()
        async with self._store.write() as conn:
            if await conn.row("SELECT 1 FROM agents WHERE name = ?", (name,)):
                raise Conflict(
                    f"agent {name!r} already exists; `memos agent rotate-token {name}` issues a new token"
                )
            await conn.execute(
                "INSERT INTO agents (name, token_hash, created_at) VALUES (?, ?, ?)",
                (name, token_hash(token), created),
            )
            await conn.execute(
                "INSERT OR IGNORE INTO cubes (name, owner, description, created_at) VALUES (?, ?, ?, ?)",
                (private_cube_of(name), name, f"Private memories of agent {name}", created),
            )
        return AgentInfo(name=name, created_at=created), token

    async def rotate_token(self, name: str) -> str:
        token = new_token()
        async with self._store.write() as conn:
            if not await conn.row("SELECT 1 FROM agents WHERE name = ?", (name,)):
                raise NotFound(f"no agent named {name!r}")
            await conn.execute("UPDATE agents SET token_hash = ? WHERE name = ?", (token_hash(token), name))
        return token

    async def set_disabled(self, name: str, disabled: bool) -> None:
        async with self._store.write() as conn:
            if not await conn.row("SELECT 1 FROM agents WHERE name = ?", (name,)):
                raise NotFound(f"no agent named {name!r}")
            await conn.execute(
                "UPDATE agents SET disabled_at = ? WHERE name = ?", (now_iso() if disabled else None, name)
            )

    async def list(self) -> list[AgentInfo]:
        async with self._store.read() as conn:
            rows = await conn.rows(
                "SELECT name, created_at, last_seen_at, disabled_at FROM agents ORDER BY name"
            )
        return [
            AgentInfo(
                name=r["name"],
                created_at=r["created_at"],
                last_seen_at=r["last_seen_at"],
                disabled=r["disabled_at"] is not None,
            )
            for r in rows
        ]

    async def authenticate(self, token: str) -> Agent:
        """The agent a token belongs to; Unauthenticated for an unknown or disabled one."""
        if not token.startswith(TOKEN_PREFIX):
            raise Unauthenticated("not a memos token")
        return await self.authenticate_hash(token_hash(token))

    async def authenticate_hash(self, hashed: str) -> Agent:
        """The agent whose current token has this hash: a dashboard session keeps only the hash and asks on
        every request, so a rotated token or a disabled agent ends the session at once."""
        async with self._store.read() as conn:
            row = await conn.row("SELECT name, disabled_at FROM agents WHERE token_hash = ?", (hashed,))
        if row is None:
            raise Unauthenticated("unknown token")
        name = row["name"]
        if row["disabled_at"] is not None:
            raise Unauthenticated(f"agent {name!r} is disabled")
        await self._touch(name)
        return agent_named(name)

    async def _credentials(self) -> dict[str, str]:
        """Each enabled agent's token hash."""
        async with self._store.read() as conn:
            rows = await conn.rows("SELECT name, token_hash FROM agents WHERE disabled_at IS NULL")
        return {row["name"]: row["token_hash"] for row in rows}

    async def watch_revocations(
        self,
        hub: ChangeHub,
        interval_s: float = 0.5,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Publish AgentRevoked for every agent whose token stops working: disabled, its token rotated, or
        removed. `memos agent disable` and `rotate-token` change the database from another process, and a
        token is checked only when a request comes, so without this an open event stream would outlive the
        decision. The agents table is small: reading it twice a second costs nothing."""
        known = await self._credentials()
        task_status.started()
        while True:
            await anyio.sleep(interval_s)
            now = await retrying("reading the agents table for revoked tokens", self._credentials)
            for name, hashed in known.items():
                if now.get(name) != hashed:
                    hub.publish(AgentRevoked(name))
            known = now

    async def _touch(self, name: str) -> None:
        now = time.monotonic()
        if now - self._last_seen_written.get(name, -_LAST_SEEN_INTERVAL_S) < _LAST_SEEN_INTERVAL_S:
            return
        self._last_seen_written[name] = now
        try:
            async with self._store.write() as conn:
                await conn.execute("UPDATE agents SET last_seen_at = ? WHERE name = ?", (now_iso(), name))
        except MemosError as exc:
            if not exc.retryable:
                raise
            # A locked database or a full disk must not refuse a valid token over bookkeeping; a request
            # after the next interval records the time.
            log.warning("the last-seen time of agent %s was not recorded: %s", name, exc)


class Groups:
    """Named sets of agents that policy rules and grants can name (`group:NAME`)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, name: str) -> None:
        check_name(name, "group name")
        async with self._store.write() as conn:
            if await conn.row("SELECT 1 FROM groups WHERE name = ?", (name,)):
                raise Conflict(f"group {name!r} already exists")
            await conn.execute("INSERT INTO groups (name, created_at) VALUES (?, ?)", (name, now_iso()))

    async def _group_id(self, conn: Connection, name: str) -> int:
        group_id = await conn.value("SELECT id FROM groups WHERE name = ?", (name,))
        if group_id is None:
            raise NotFound(f"no group named {name!r}; `memos group add {name}` creates it")
        return int(group_id)

    async def add_member(self, group: str, agent: str) -> None:
        async with self._store.write() as conn:
            group_id = await self._group_id(conn, group)
            if not await conn.row("SELECT 1 FROM agents WHERE name = ?", (agent,)):
                raise NotFound(f"no agent named {agent!r}")
            await conn.execute(
                "INSERT OR IGNORE INTO group_members (group_id, agent, added_at) VALUES (?, ?, ?)",
                (group_id, agent, now_iso()),
            )

    async def remove_member(self, group: str, agent: str) -> None:
        async with self._store.write() as conn:
            group_id = await self._group_id(conn, group)
            if not await conn.row(
                "SELECT 1 FROM group_members WHERE group_id = ? AND agent = ?", (group_id, agent)
            ):
                raise NotFound(f"agent {agent!r} is not in group {group!r}")
            await conn.execute(
                "DELETE FROM group_members WHERE group_id = ? AND agent = ?", (group_id, agent)
            )

    async def list(self) -> dict[str, list[str]]:
        """Group name -> its members, sorted."""
        async with self._store.read() as conn:
            rows = await conn.rows(
                "SELECT g.name, m.agent FROM groups g LEFT JOIN group_members m ON m.group_id = g.id"
                " ORDER BY g.name, m.agent"
            )
        groups: dict[str, list[str]] = {}
        for row in rows:
            members = groups.setdefault(row["name"], [])
            if row["agent"] is not None:
                members.append(row["agent"])
        return groups
