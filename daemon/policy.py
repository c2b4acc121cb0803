"""Who may do what to which cube: the one place every operation asks.

Three sources combine by the rules in `policy_rules`: ownership (an owner holds admin), the policy files
(allow and deny rules, hot-reloaded) and the grants stored by `cube_share`. Every check runs on the caller's
connection, inside the same transaction as the data it guards, so a revoked grant stops the very next call.
A cube the agent may not read is reported with the same words as a cube that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec

from daemon.audit import Audit
from daemon.cube_settings import CubeRule
from daemon.errors import NotFound, PermissionDenied
from daemon.models import Agent
from daemon.policy_rules import LEVEL, Grant, SourcedRule, effective_level, rule_applies
from daemon.rows import Row
from daemon.store import Connection, placeholders
from daemon.timeutil import now_iso
from daemon.validation import private_cube_of

Permission = Literal["read", "write", "share", "admin"]


class CubeRef(msgspec.Struct, frozen=True):
    id: int
    name: str


class RejectedFile(msgspec.Struct, kw_only=True):
    """A policy file that failed to parse or validate, and what of it is still in force: never its allow
    rules; its deny rules and `[[cube]]` settings as they were in its last good version."""

    file: str
    error: str
    kept_deny_rules: int = 0
    kept_cube_settings: int = 0


class PolicyState(msgspec.Struct, kw_only=True):
    """What is in force, for `memos status`: the rules, the files read and those rejected."""

    directory: str | None
    files: list[str]
    rules: int
    loaded_at: str | None
    error: str | None = None  # the rejected files' errors in one line (older `memos status` reads this)
    rejected: list[RejectedFile] = msgspec.field(default_factory=list)


def not_visible(cube: str) -> NotFound:
    return NotFound(f"cube {cube!r} does not exist or you have no access to it; cube_list shows yours")


class AccessPolicy:
    def __init__(self, audit: Audit) -> None:
        self._audit = audit
        self._rules: tuple[SourcedRule, ...] = ()
        self.cube_rules: tuple[CubeRule, ...] = ()  # [[cube]] settings from the policy files
        self.state = PolicyState(directory=None, files=[], rules=0, loaded_at=None)

    @property
    def rules(self) -> tuple[SourcedRule, ...]:
        return self._rules

    def install(
        self,
        rules: Sequence[SourcedRule],
        files: list[str],
        directory: str,
        cube_rules: Sequence[CubeRule] = (),
        rejected: Sequence[RejectedFile] = (),
    ) -> None:
        """Put a complete rule set in force (one assignment each: no call sees half of one)."""
        self._rules = tuple(rules)
        self.cube_rules = tuple(cube_rules)
        self.state = PolicyState(
            directory=directory, files=files, rules=len(rules), loaded_at=now_iso(),
            error="; ".join(r.error for r in rejected) or None, rejected=list(rejected),
        )  # fmt: skip

    @staticmethod
    async def groups_of(conn: Connection, agent: str) -> list[str]:
        rows = await conn.rows(
            "SELECT g.name FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.agent = ?",
            (agent,),
        )
        return [row["name"] for row in rows]

    @staticmethod
    async def _groups_and_grants(
        conn: Connection, cube_ids: Sequence[int], agent: str
    ) -> tuple[list[str], dict[int, list[Grant]]]:
        """The agent's groups, and the grants it holds (as itself, as anyone, or through a group) on
        `cube_ids` (every cube when empty), in one statement: the groups are the rows without a cube."""
        member = "SELECT g.name FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.agent = ?"
        rows = await conn.rows(
            f"SELECT NULL AS cube_id, mine.name AS grantee, NULL AS permission FROM ({member}) mine"
            " UNION ALL SELECT cube_id, grantee, permission FROM cube_grants WHERE (grantee IN (?, '*')"
            f" OR grantee IN (SELECT 'group:' || theirs.name FROM ({member}) theirs))"
            + (f" AND cube_id IN ({placeholders(len(cube_ids))})" if cube_ids else ""),
            [agent, agent, agent, *cube_ids],
        )
        groups: list[str] = []
        grants: dict[int, list[Grant]] = {}
        for row in rows:
            if row["cube_id"] is None:
                groups.append(row["grantee"])
            else:
                grants.setdefault(row["cube_id"], []).append(Grant(row["grantee"], row["permission"]))
        return groups, grants

    async def levels(
        self, conn: Connection, agent: Agent, cube_ids: Sequence[int] | None = None
    ) -> dict[int, tuple[str, int]]:
        """cube id -> (name, level) for every cube (or the given ones) where the agent holds any permission."""
        if cube_ids is not None and not cube_ids:
            return {}
        sql = "SELECT id, name, owner FROM cubes"
        if cube_ids is not None:
            sql += f" WHERE id IN ({placeholders(len(cube_ids))})"
        return await self._levels_of(conn, agent, await conn.rows(sql, list(cube_ids or [])), cube_ids)

    async def _levels_of(
        self, conn: Connection, agent: Agent, cubes: Sequence[Row], cube_ids: Sequence[int] | None
    ) -> dict[int, tuple[str, int]]:
        """`levels` for these rows of `cubes` (id, name, owner), read by the caller (`cube_ids`: which)."""
        groups, grants = await self._groups_and_grants(conn, list(cube_ids or []), agent.name)
        result = {}
        for cube in cubes:
            level = effective_level(
                cube=cube["name"], owner=cube["owner"], agent=agent.name, groups=groups, rules=self._rules,
                grants=grants.get(cube["id"], ()),
            )  # fmt: skip
            if level:
                result[cube["id"]] = (cube["name"], level)
        return result

    async def readers(
        self, conn: Connection, cubes: Iterable[str], agents: Iterable[str]
    ) -> dict[str, set[str]]:
        """agent -> which of `cubes` it may read, for many agents at once (three queries in all)."""
        names, who = sorted(set(cubes)), sorted(set(agents))
        if not names or not who:
            return {}
        rows = await conn.rows(
            f"SELECT id, name, owner FROM cubes WHERE name IN ({placeholders(len(names))})", names
        )
        grants: dict[int, list[Grant]] = {}
        for grant in await conn.rows(
            f"SELECT cube_id, grantee, permission FROM cube_grants WHERE cube_id IN ({placeholders(len(rows))})",
            [row["id"] for row in rows],
        ):
            grants.setdefault(grant["cube_id"], []).append(Grant(grant["grantee"], grant["permission"]))
        groups: dict[str, list[str]] = {}
        for member in await conn.rows(
            "SELECT m.agent, g.name AS group_name FROM group_members m JOIN groups g ON g.id = m.group_id"
            f" WHERE m.agent IN ({placeholders(len(who))})",
            who,
        ):
            groups.setdefault(member["agent"], []).append(member["group_name"])
        may_read: dict[str, set[str]] = {}
        for agent in who:
            for cube in rows:
                level = effective_level(
                    cube=cube["name"], owner=cube["owner"], agent=agent, groups=groups.get(agent, []),
                    rules=self._rules, grants=grants.get(cube["id"], ()),
                )  # fmt: skip
                if level:
                    may_read.setdefault(agent, set()).add(cube["name"])
        return may_read

    async def related(self, conn: Connection, agent: Agent, other: str) -> bool:
        """Whether `agent` may name `other` (to share with, to hand a task to): itself; an agent it shares a
        group with, that a policy rule names together with it, or that it has a task with; one that owns,
        holds a stored grant on, granted something on or is named by a rule on a cube the agent may read (as
        `cube_members` shows), or the reverse. Names of
        other agents read like names of agents that do not exist, so probing reveals nothing."""
        if other == agent.name:
            return True
        if await conn.row(
            "SELECT 1 FROM group_members a JOIN group_members b ON a.group_id = b.group_id"
            " WHERE a.agent = ? AND b.agent = ?"
            " UNION ALL SELECT 1 FROM tasks WHERE (from_agent = ? AND to_agent = ?) OR (from_agent = ? AND to_agent = ?)"
            " LIMIT 1",
            (agent.name, other, agent.name, other, other, agent.name),
        ):
            return True
        mine, theirs = set(await self.groups_of(conn, agent.name)), set(await self.groups_of(conn, other))
        for sourced in self._rules:
            rule = sourced.rule
            if (agent.name in rule.agents or not mine.isdisjoint(rule.groups)) and (
                other in rule.agents or not theirs.isdisjoint(rule.groups)
            ):
                return True
        for viewer, named in ((agent.name, other), (other, agent.name)):
            readable = await self.levels(conn, Agent(name=viewer, home_cube=private_cube_of(viewer)))
            cube_ids = list(readable)
            naming = [r.rule for r in self._rules if named in r.rule.agents]  # shown by cube_members
            if any(rule_applies(rule, cube, named, ()) for rule in naming for cube, _ in readable.values()):
                return True
            if cube_ids and await conn.row(
                f"SELECT 1 FROM cubes WHERE owner = ? AND id IN ({placeholders(len(cube_ids))})"
                " UNION ALL SELECT 1 FROM cube_grants WHERE (grantee = ? OR granted_by = ?)"
                f" AND cube_id IN ({placeholders(len(cube_ids))}) LIMIT 1",
                [named, *cube_ids, named, named, *cube_ids],
            ):
                return True
        return False

    async def readable_cubes(self, conn: Connection, agent: Agent) -> list[CubeRef]:
        """Every cube the agent may read: its private cube first, then by name."""
        levels = await self.levels(conn, agent)
        refs = [CubeRef(id=cube_id, name=name) for cube_id, (name, _) in levels.items()]
        return sorted(refs, key=lambda ref: (ref.name != agent.home_cube, ref.name))

    async def level_of(self, conn: Connection, agent: Agent, cube_id: int) -> int:
        return (await self.levels(conn, agent, [cube_id])).get(cube_id, ("", 0))[1]

    async def require(
        self, conn: Connection, agent: Agent, cube: str, permission: Permission, action: str = ""
    ) -> CubeRef:
        """The cube, if the agent holds `permission` on it. NotFound if it may not even read it."""
        row = await conn.row("SELECT id, name, owner FROM cubes WHERE name = ?", (cube,))
        level = 0
        if row is not None:  # its owner read with it: a query fewer than level_of, on every call
            level = (await self._levels_of(conn, agent, [row], [row["id"]])).get(row["id"], ("", 0))[1]
        if level >= LEVEL[permission]:
            assert row is not None
            return CubeRef(id=row["id"], name=row["name"])
        if row is None:  # a probe of a name: logged for the machine's owner, never for a later cube's admins
            self._audit.denied(agent.name, action or permission, None, cube, "no such cube")
        else:
            self._audit.denied(agent.name, action or permission, cube, None, f"needs {permission}")
        if level == 0:
            raise not_visible(cube)
        raise PermissionDenied(
            f"you may {_verb(level)} cube {cube!r} but not {permission} it; its admin can cube_share"
            f" {permission} with you"
        )

    async def check_memory(
        self,
        conn: Connection,
        agent: Agent,
        cube_id: int,
        cube: str,
        memory_id: str,
        permission: Permission,
        action: str,
    ) -> None:
        """Like `require`, for a memory found by id: unreadable means 'no such memory'."""
        level = await self.level_of(conn, agent, cube_id)
        if level >= LEVEL[permission]:
            return
        self._audit.denied(agent.name, action, cube, memory_id, f"needs {permission}")
        if level == 0:
            raise NotFound(f"no memory with id {memory_id!r} that you can read; memory_search finds ids")
        raise PermissionDenied(f"you may {_verb(level)} cube {cube!r} but not {permission} it")


def _verb(level: int) -> str:
    return {1: "read", 2: "read and write", 3: "read, write and share", 4: "administer"}[level]
