"""Bearer tokens to agent identities. Identity comes only from the token, never from a tool argument."""

from __future__ import annotations

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from daemon import Agent, Identities, Unauthenticated, agent_named


class AgentTokenVerifier:
    """The SDK's TokenVerifier: a memos token becomes an AccessToken whose client_id is the agent's name."""

    def __init__(self, identities: Identities) -> None:
        self._identities = identities

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            agent = await self._identities.authenticate(token)
        except Unauthenticated:
            return None
        return AccessToken(token=token, client_id=agent.name, scopes=[])


def current_agent() -> Agent:
    """The agent of the request being served (the auth middleware has already verified its token)."""
    token = get_access_token()
    if token is None:
        raise Unauthenticated("send `Authorization: Bearer <token>` (memos agent add NAME)")
    return agent_named(token.client_id)
