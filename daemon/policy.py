"""Who may do what to which cube: the one place every operation asks.

For now an agent may read, write and administer the cubes it owns (its private `@name` cube and the cubes it
created) and nothing else. Denials are reported as NotFound, with the same words as a cube that does not
exist, so a refusal never reveals that a cube exists.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from daemon.errors import NotFound
from daemon.models import Agent
from daemon.store import Connection

Permission = Literal["read", "write", "admin"]


class CubeRef(msgspec.Struct, frozen=True):
    id: int
    name: str


def not_visible(cube: str) -> NotFound:
    return NotFound(f"cube {cube!r} does not exist or you have no access to it; cube_list shows yours")


class AccessPolicy:
    async def readable_cubes(self, conn: Connection, agent: Agent) -> list[CubeRef]:
        """Every cube the agent may read, private cube first."""
        rows = await conn.fetch_all(
            "SELECT id, name FROM cubes WHERE owner = ? ORDER BY name != ?, name",
            (agent.name, agent.home_cube),
        )
        return [CubeRef(id=r[0], name=r[1]) for r in rows]

    async def require(self, conn: Connection, agent: Agent, cube: str, permission: Permission) -> CubeRef:
        """The cube, if the agent holds `permission` on it; otherwise NotFound."""
        row = await conn.fetch_one("SELECT id, name, owner FROM cubes WHERE name = ?", (cube,))
        if row is None or row[2] != agent.name:
            raise not_visible(cube)
        return CubeRef(id=row[0], name=row[1])

    async def may(self, conn: Connection, agent: Agent, cube_id: int, permission: Permission) -> bool:
        row = await conn.fetch_one("SELECT owner FROM cubes WHERE id = ?", (cube_id,))
        return row is not None and row[0] == agent.name
