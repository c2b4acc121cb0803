"""Memory cubes: named, owned containers of memories, the unit of sharing."""

from __future__ import annotations

from daemon.errors import Conflict, InvalidInput
from daemon.models import Agent, Cube
from daemon.policy import AccessPolicy
from daemon.store import Store, placeholders
from daemon.timeutil import now_iso
from daemon.validation import PRIVATE_CUBE_PREFIX, check_cube_ref, check_name

MAX_DESCRIPTION_CHARS = 2000

_CUBE_COLUMNS = """
    c.name, c.owner, c.description, c.created_at,
    (SELECT count(*) FROM memories m WHERE m.cube_id = c.id AND m.deleted_at IS NULL)
"""


class Cubes:
    def __init__(self, store: Store, access: AccessPolicy) -> None:
        self._store = store
        self._access = access

    async def create(self, agent: Agent, name: str, description: str = "") -> Cube:
        if isinstance(name, str) and name.startswith(PRIVATE_CUBE_PREFIX):
            raise InvalidInput(
                f"cube names starting with {PRIVATE_CUBE_PREFIX!r} are reserved for agents' private cubes"
            )
        check_name(name, "cube name")
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise InvalidInput(f"description is longer than {MAX_DESCRIPTION_CHARS} characters")
        if "\x00" in description:
            raise InvalidInput("description contains a NUL character")
        created = now_iso()
        async with self._store.write() as conn:
            if await conn.fetch_one("SELECT 1 FROM cubes WHERE name = ?", (name,)):
                raise Conflict(f"a cube named {name!r} already exists; choose another name")
            await conn.execute(
                "INSERT INTO cubes (name, owner, description, created_at) VALUES (?, ?, ?, ?)",
                (name, agent.name, description, created),
            )
        return Cube(name=name, owner=agent.name, description=description, created_at=created)

    async def list(self, agent: Agent) -> list[Cube]:
        async with self._store.read() as conn:
            refs = await self._access.readable_cubes(conn, agent)
            if not refs:
                return []
            rows = await conn.fetch_all(
                f"SELECT {_CUBE_COLUMNS} FROM cubes c WHERE c.id IN ({placeholders(len(refs))})",
                [ref.id for ref in refs],
            )
        by_name = {row[0]: row for row in rows}
        return [_cube(by_name[ref.name]) for ref in refs]

    async def describe(self, agent: Agent, name: str) -> Cube:
        check_cube_ref(name)
        async with self._store.read() as conn:
            ref = await self._access.require(conn, agent, name, "read")
            row = await conn.fetch_one(f"SELECT {_CUBE_COLUMNS} FROM cubes c WHERE c.id = ?", (ref.id,))
        assert row is not None
        return _cube(row)


def _cube(row: tuple) -> Cube:
    return Cube(name=row[0], owner=row[1], description=row[2], created_at=row[3], memory_count=row[4])
