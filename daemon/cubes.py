"""Memory cubes: named, owned containers of memories, the unit of sharing."""

from __future__ import annotations

import builtins

from daemon.audit import Audit
from daemon.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from daemon.events import ChangeHub, CubesChanged
from daemon.idempotency import Recorder
from daemon.models import Agent, Cube, CubeMembers, Member
from daemon.policy import AccessPolicy, CubeRef
from daemon.policy_rules import EVERYONE, LEVEL, cube_matches
from daemon.rows import Row
from daemon.store import Connection, Store, placeholders
from daemon.timeutil import now_iso
from daemon.validation import PRIVATE_CUBE_PREFIX, check_cube_ref, check_name

MAX_DESCRIPTION_CHARS = 2000

_CUBE_COLUMNS = """
    c.name, c.owner, c.description, c.created_at,
    (SELECT count(*) FROM memories m WHERE m.cube_id = c.id AND m.deleted_at IS NULL) AS memory_count
"""


class Cubes:
    def __init__(self, store: Store, access: AccessPolicy, hub: ChangeHub | None = None) -> None:
        self._store = store
        self._access = access
        self._hub = hub or ChangeHub()

    async def create(
        self, agent: Agent, name: str, description: str = "", *, recorder: Recorder | None = None
    ) -> Cube:
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
            if await conn.row("SELECT 1 FROM cubes WHERE name = ?", (name,)):
                raise Conflict(  # the same words whether or not the caller may see it: names are unique
                    f"a cube named {name!r} already exists (cube names are unique on this machine, cubes you"
                    " cannot see included); choose another name"
                )
            await conn.execute(
                "INSERT INTO cubes (name, owner, description, created_at) VALUES (?, ?, ?, ?)",
                (name, agent.name, description, created),
            )
            await Audit.record(conn, agent.name, "cube_create", name, None)
            conn.after_commit(lambda: self._hub.publish(CubesChanged(name)))
            cube = Cube(name=name, owner=agent.name, description=description, created_at=created)
            if recorder is not None:
                await recorder.record(conn, cube)
        return cube

    async def list(self, agent: Agent) -> list[Cube]:
        async with self._store.read() as conn:
            refs = await self._access.readable_cubes(conn, agent)
            if not refs:
                return []
            rows = await conn.rows(
                f"SELECT {_CUBE_COLUMNS} FROM cubes c WHERE c.id IN ({placeholders(len(refs))})",
                [ref.id for ref in refs],
            )
        by_name = {row["name"]: row for row in rows}
        return [_cube(by_name[ref.name]) for ref in refs]

    async def overview(self) -> builtins.list[tuple[Cube, CubeMembers]]:
        """Every cube with its members: the machine owner's view (the dashboard's admin page, `memos ui`);
        no agent asks for it, so no agent's permissions apply."""
        async with self._store.read() as conn:
            rows = await conn.rows(f"SELECT c.id, {_CUBE_COLUMNS} FROM cubes c ORDER BY c.name")
            return [
                (_cube(row), await self._members_on(conn, CubeRef(id=row["id"], name=row["name"])))
                for row in rows
            ]

    async def readable(self, agent: Agent) -> builtins.list[str]:
        """Names of the cubes the agent may read now: its private cube first, then by name."""
        async with self._store.read() as conn:
            refs = await self._access.readable_cubes(conn, agent)
        return [ref.name for ref in refs]

    async def administered(self, agent: Agent) -> builtins.list[str]:
        """Names of the cubes the agent administers (whose audit entries it may read)."""
        async with self._store.read() as conn:
            levels = await self._access.levels(conn, agent)
        return sorted(name for name, level in levels.values() if level >= LEVEL["admin"])

    async def describe(self, agent: Agent, name: str) -> Cube:
        check_cube_ref(name)
        async with self._store.read() as conn:
            ref = await self._access.require(conn, agent, name, "read", "cube_describe")
            row = await conn.row(f"SELECT {_CUBE_COLUMNS} FROM cubes c WHERE c.id = ?", (ref.id,))
        assert row is not None
        return _cube(row)

    async def _check_grantee(self, conn: Connection, agent: Agent, grantee: str) -> str:
        if grantee == EVERYONE:
            return grantee
        if grantee.startswith("group:"):
            group = check_name(grantee[6:], "grantee group name")
            if not await conn.row("SELECT 1 FROM groups WHERE name = ?", (group,)):
                raise InvalidInput(
                    f"grantee {grantee!r}: no group named {group!r}; `memos group add {group}` creates it"
                )
            return grantee
        check_name(grantee, "grantee")
        exists = await conn.row("SELECT 1 FROM agents WHERE name = ?", (grantee,))
        if not exists or not await self._access.related(conn, agent, grantee):
            raise NotFound(
                f"no agent {grantee!r} you can share with; you can name agents you share a group, a policy"
                " rule, a cube or a task with (the machine's owner relates agents with `memos group"
                " add-member`), or share with 'group:NAME' or '*' (everyone)"
            )
        return grantee

    async def share(
        self, agent: Agent, cube: str, grantee: str, permission: str, *, recorder: Recorder | None = None
    ) -> CubeMembers:
        """Grant `permission` on the cube; needs share, and admin to grant admin."""
        check_cube_ref(cube)
        if permission not in LEVEL:
            raise InvalidInput(f"permission {permission!r} is not one of: {', '.join(LEVEL)}")
        async with self._store.write() as conn:
            ref = await self._access.require(conn, agent, cube, "share", "cube_share")
            if LEVEL[permission] > await self._access.level_of(conn, agent, ref.id):
                raise PermissionDenied(f"only an admin of {cube!r} can grant {permission}")
            grantee = await self._check_grantee(conn, agent, grantee)
            await conn.execute(
                "INSERT OR REPLACE INTO cube_grants (cube_id, grantee, permission, granted_by, granted_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (ref.id, grantee, permission, agent.name, now_iso()),
            )
            await Audit.record(conn, agent.name, "cube_share", cube, grantee, permission)
            return await self._finish(conn, ref, recorder)

    async def unshare(
        self,
        agent: Agent,
        cube: str,
        grantee: str,
        permission: str | None,
        *,
        recorder: Recorder | None = None,
    ) -> CubeMembers:
        """Remove one stored grant, or all of the grantee's on this cube. Policy-file rules stay."""
        check_cube_ref(cube)
        if grantee != EVERYONE:  # only well-formed grantees were ever granted (see _check_grantee)
            check_name(grantee.removeprefix("group:"), "grantee")
        if permission is not None and permission not in LEVEL:
            raise InvalidInput(f"permission {permission!r} is not one of: {', '.join(LEVEL)}")
        async with self._store.write() as conn:
            ref = await self._access.require(conn, agent, cube, "share", "cube_unshare")
            rows = await conn.rows(
                "SELECT permission FROM cube_grants WHERE cube_id = ? AND grantee = ?"
                + (" AND permission = ?" if permission else ""),
                [ref.id, grantee] + ([permission] if permission else []),
            )
            if not rows:
                what = f"{permission} grant" if permission else "grant"
                raise NotFound(f"{grantee!r} holds no stored {what} on {cube!r}; cube_members lists them")
            highest = max(LEVEL[row["permission"]] for row in rows)
            if highest > await self._access.level_of(conn, agent, ref.id):
                raise PermissionDenied(f"only an admin of {cube!r} can remove an admin grant")
            await conn.execute(
                "DELETE FROM cube_grants WHERE cube_id = ? AND grantee = ?"
                + (" AND permission = ?" if permission else ""),
                [ref.id, grantee] + ([permission] if permission else []),
            )
            await Audit.record(conn, agent.name, "cube_unshare", cube, grantee, permission or "all")
            return await self._finish(conn, ref, recorder)

    async def _finish(self, conn: Connection, ref: CubeRef, recorder: Recorder | None) -> CubeMembers:
        """The members as this write leaves them, recorded for idempotent retries if asked."""
        members = await self._members_on(conn, ref)
        conn.after_commit(lambda: self._hub.publish(CubesChanged(ref.name)))
        if recorder is not None:
            await recorder.record(conn, members)
        return members

    async def members(self, agent: Agent, cube: str) -> CubeMembers:
        """Who holds what on the cube, and why: ownership, policy-file rules and stored grants."""
        check_cube_ref(cube)
        async with self._store.read() as conn:
            ref = await self._access.require(conn, agent, cube, "read", "cube_members")
            return await self._members_on(conn, ref)

    async def _members_on(self, conn: Connection, ref: CubeRef) -> CubeMembers:
        owner = await conn.value("SELECT owner FROM cubes WHERE id = ?", (ref.id,))
        grants = await conn.rows(
            "SELECT grantee, permission, granted_by FROM cube_grants WHERE cube_id = ? ORDER BY grantee",
            (ref.id,),
        )
        assert owner is not None
        members = [Member(grantee=owner, permission="admin", effect="allow", source="owner")]
        for sourced in self._access.rules:
            rule = sourced.rule
            if any(cube_matches(pattern, ref.name) for pattern in rule.cubes):
                for grantee in [*rule.agents, *(f"group:{g}" for g in rule.groups)]:
                    members.append(
                        Member(
                            grantee=grantee,
                            permission=rule.permission,
                            effect=rule.effect,
                            source=sourced.source,
                        )
                    )
        for grant in grants:
            members.append(
                Member(
                    grantee=grant["grantee"],
                    permission=grant["permission"],
                    effect="allow",
                    source=f"cube_share by {grant['granted_by']}",
                )
            )
        return CubeMembers(cube=ref.name, owner=owner, members=members)


def _cube(row: Row) -> Cube:
    return Cube(
        name=row["name"],
        owner=row["owner"],
        description=row["description"],
        created_at=row["created_at"],
        memory_count=row["memory_count"],
    )
