"""Dashboard sessions: a person signs in with an agent's token and then holds only a random session id.

The token never leaves the sign-in request: the session keeps its SHA-256 and asks the agents table on every
request whether that is still the agent's token and the agent is enabled, so `memos agent rotate-token` or
`memos agent disable` ends every dashboard session of that agent at its next request. Sessions live in the
daemon's memory (a restart signs everyone out) and end after `[ui] session_idle_minutes` unused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import anyio

from daemon import Agent, Identities, Unauthenticated, token_hash

COOKIE = "memos_ui"
MAX_SESSIONS = 10_000  # the oldest idle ones go first when more are opened


@dataclass
class UiSession:
    id: str
    agent: Agent | None  # None: the machine's owner, signed in with a `memos ui` link (the admin view)
    token_hash: str | None
    csrf: str  # put in every form, checked on every POST
    last_used: float

    @property
    def admin(self) -> bool:
        return self.agent is None

    @property
    def acting(self) -> Agent:
        """The agent whose permissions every page and edit applies (routes refuse an admin session)."""
        if self.agent is None:
            raise RuntimeError("an admin session reached an agent's page: the route should have refused it")
        return self.agent


class UiSessions:
    def __init__(self, identities: Identities, idle_s: float) -> None:
        self._identities = identities
        self._idle_s = idle_s
        self._sessions: dict[str, UiSession] = {}

    async def sign_in(self, token: str) -> UiSession:
        """A new session for the token's agent; Unauthenticated for a wrong, rotated or disabled one."""
        agent = await self._identities.authenticate(token.strip())
        return self._open(agent, token_hash(token.strip()))

    def sign_in_admin(self) -> UiSession:
        """A session for the machine's owner (the caller has redeemed a `memos ui` link)."""
        return self._open(None, None)

    def _open(self, agent: Agent | None, hashed: str | None) -> UiSession:
        now = anyio.current_time()
        self._forget_idle(now)
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.last_used)
            del self._sessions[oldest.id]
        session = UiSession(
            id=secrets.token_urlsafe(32),
            agent=agent,
            token_hash=hashed,
            csrf=secrets.token_urlsafe(32),
            last_used=now,
        )
        self._sessions[session.id] = session
        return session

    async def resolve(self, session_id: str | None) -> UiSession | None:
        """The live session with this id, if its agent still holds the same token and is enabled."""
        session = self._sessions.get(session_id or "")
        if session is None:
            return None
        now = anyio.current_time()
        if now - session.last_used > self._idle_s:
            self.sign_out(session.id)
            return None
        if session.token_hash is None:  # the owner's session: no token to check, it ends when idle
            session.last_used = now
            return session
        try:
            agent = await self._identities.authenticate_hash(session.token_hash)
        except Unauthenticated:
            self.sign_out(session.id)
            return None
        if agent != session.agent:  # cannot happen with unique hashes; never serve a different agent
            self.sign_out(session.id)
            return None
        session.last_used = now
        return session

    def sign_out(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if now - s.last_used > self._idle_s]:
            del self._sessions[key]
