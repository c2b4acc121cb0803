"""The export lines besides memories, written by `memos export --all`: cubes (with their settings), agents
(never their tokens), groups, grants and tasks. Each line carries `"type"`; a line without one is a memory.

Importing one adds it when nothing of that name (or id) exists yet and otherwise leaves what is there, so a
second import adds nothing. An imported agent has no token: `memos agent rotate-token` gives it one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from daemon.cube_settings import CubeSettings, check_settings
from daemon.errors import InvalidInput
from daemon.models import TaskNote, TaskPriority, TaskStatus
from daemon.policy_rules import EVERYONE, LEVEL
from daemon.store import Connection, Store
from daemon.timeutil import parse_time
from daemon.validation import check_cube_ref, check_name, private_cube_of

MAX_TEXT = 8000  # a cube description, a task's title, description or note


class _Record(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    pass


class CubeRecord(_Record, tag="cube", kw_only=True, forbid_unknown_fields=True):
    name: str
    owner: str
    description: str = ""
    created_at: str
    settings: CubeSettings = msgspec.field(default_factory=CubeSettings)


class AgentRecord(_Record, tag="agent", kw_only=True, forbid_unknown_fields=True):
    name: str
    created_at: str
    last_seen_at: str | None = None
    disabled_at: str | None = None


class GroupMember(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    agent: str
    added_at: str


class GroupRecord(_Record, tag="group", kw_only=True, forbid_unknown_fields=True):
    name: str
    created_at: str
    members: list[GroupMember] = msgspec.field(default_factory=list)


class GrantRecord(_Record, tag="grant", kw_only=True, forbid_unknown_fields=True):
    cube: str
    grantee: str  # an agent, "group:NAME" or "*"
    permission: str
    granted_by: str
    granted_at: str


class TaskRecord(_Record, tag="task", kw_only=True, forbid_unknown_fields=True):
    id: str
    from_agent: str
    to_agent: str
    title: str
    description: str = ""
    status: TaskStatus
    priority: TaskPriority = "normal"
    cubes: list[str] = msgspec.field(default_factory=list)
    created_at: str
    updated_at: str
    notes: list[TaskNote] = msgspec.field(default_factory=list)


SetupRecord = CubeRecord | AgentRecord | GroupRecord | GrantRecord | TaskRecord
RECORD_TYPES = ("memory", "cube", "agent", "group", "grant", "task")
decode_setup = msgspec.json.Decoder(SetupRecord).decode
_json = msgspec.json.Encoder()


def _time(value: str, field: str) -> str:
    return parse_time(value, field)


def _text(value: str, field: str, required: bool = False) -> str:
    if required and not value.strip():
        raise InvalidInput(f"{field} is empty")
    if len(value) > MAX_TEXT or "\x00" in value:
        raise InvalidInput(f"{field} is longer than {MAX_TEXT} characters or contains a NUL character")
    return value


def check_setup(record: SetupRecord) -> SetupRecord:
    """The line's own checks (names, permissions, times), before anything is looked up in the store."""
    replace = msgspec.structs.replace
    if isinstance(record, CubeRecord):
        check_cube_ref(record.name)
        check_name(record.owner, "owner")
        _text(record.description, "description")
        check_settings(record.settings)
        return replace(record, created_at=_time(record.created_at, "created_at"))
    if isinstance(record, AgentRecord):
        check_name(record.name, "agent name")
        return replace(
            record,
            created_at=_time(record.created_at, "created_at"),
            last_seen_at=_time(record.last_seen_at, "last_seen_at") if record.last_seen_at else None,
            disabled_at=_time(record.disabled_at, "disabled_at") if record.disabled_at else None,
        )
    if isinstance(record, GroupRecord):
        check_name(record.name, "group name")
        members = [
            GroupMember(
                agent=check_name(m.agent, f"members[{i}].agent"), added_at=_time(m.added_at, "added_at")
            )
            for i, m in enumerate(record.members)
        ]
        return replace(record, created_at=_time(record.created_at, "created_at"), members=members)
    if isinstance(record, GrantRecord):
        check_cube_ref(record.cube)
        if record.grantee != EVERYONE:
            check_name(record.grantee.removeprefix("group:"), "grantee")
        if record.permission not in LEVEL:
            raise InvalidInput(f"permission {record.permission!r} is not one of: {', '.join(LEVEL)}")
        check_name(record.granted_by, "granted_by")
        return replace(record, granted_at=_time(record.granted_at, "granted_at"))
    if not record.id.startswith("task_") or len(record.id) > 64:
        raise InvalidInput(f"id {record.id!r} is not a task id (task_ followed by hex)")
    check_name(record.from_agent, "from_agent")
    check_name(record.to_agent, "to_agent")
    _text(record.title, "title", required=True)
    _text(record.description, "description")
    notes = [
        TaskNote(
            agent=check_name(n.agent, f"notes[{i}].agent"),
            at=_time(n.at, f"notes[{i}].at"),
            text=_text(n.text, f"notes[{i}].text"),
        )
        for i, n in enumerate(record.notes)
    ]
    return replace(
        record,
        cubes=[check_cube_ref(c) for c in record.cubes],
        created_at=_time(record.created_at, "created_at"),
        updated_at=_time(record.updated_at, "updated_at"),
        notes=notes,
    )


async def _exists(conn: Connection, sql: str, *params: object) -> bool:
    return await conn.row(sql, params) is not None


async def write_setup(conn: Connection, record: SetupRecord) -> bool:
    """Add the record unless it is there already (True if added); InvalidInput, with nothing written, if it
    names a cube, agent or group the store does not have."""
    if isinstance(record, CubeRecord):
        if await _exists(conn, "SELECT 1 FROM cubes WHERE name = ?", record.name):
            return False
        await conn.execute(
            "INSERT INTO cubes (name, owner, description, created_at, settings) VALUES (?, ?, ?, ?, ?)",
            (record.name, record.owner, record.description, record.created_at, _json.encode(record.settings).decode()),
        )  # fmt: skip
        return True
    if isinstance(record, AgentRecord):
        if await _exists(conn, "SELECT 1 FROM agents WHERE name = ?", record.name):
            return False
        # No token: a stored hash is 64 hex digits, so this one matches no token until rotate-token.
        await conn.execute(
            "INSERT INTO agents (name, token_hash, created_at, last_seen_at, disabled_at) VALUES (?, ?, ?, ?, ?)",
            (record.name, f"none:{record.name}", record.created_at, record.last_seen_at, record.disabled_at),
        )
        await conn.execute(
            "INSERT OR IGNORE INTO cubes (name, owner, description, created_at) VALUES (?, ?, ?, ?)",
            (private_cube_of(record.name), record.name, f"Private memories of agent {record.name}", record.created_at),
        )  # fmt: skip
        return True
    if isinstance(record, GroupRecord):
        for member in record.members:
            if not await _exists(conn, "SELECT 1 FROM agents WHERE name = ?", member.agent):
                raise InvalidInput(
                    f"member {member.agent!r} is no agent here; its agent line must come first"
                )
        found = await conn.value("SELECT id FROM groups WHERE name = ?", (record.name,))
        group_id = found
        if group_id is None:
            group_id = await conn.execute(
                "INSERT INTO groups (name, created_at) VALUES (?, ?)", (record.name, record.created_at)
            )
        await conn.execute_many(
            "INSERT OR IGNORE INTO group_members (group_id, agent, added_at) VALUES (?, ?, ?)",
            [(group_id, m.agent, m.added_at) for m in record.members],
        )
        return found is None
    if isinstance(record, GrantRecord):
        cube_id = await conn.value("SELECT id FROM cubes WHERE name = ?", (record.cube,))
        if cube_id is None:
            raise InvalidInput(f"no cube named {record.cube!r} here; its cube line must come first")
        if record.grantee.startswith("group:"):
            if not await _exists(conn, "SELECT 1 FROM groups WHERE name = ?", record.grantee[6:]):
                raise InvalidInput(
                    f"no group named {record.grantee[6:]!r} here; its group line must come first"
                )
        elif record.grantee != EVERYONE and not await _exists(
            conn, "SELECT 1 FROM agents WHERE name = ?", record.grantee
        ):
            raise InvalidInput(f"grantee {record.grantee!r} is no agent here; its agent line must come first")
        key = (cube_id, record.grantee, record.permission)
        if await _exists(
            conn, "SELECT 1 FROM cube_grants WHERE cube_id = ? AND grantee = ? AND permission = ?", *key
        ):
            return False
        await conn.execute(
            "INSERT INTO cube_grants (cube_id, grantee, permission, granted_by, granted_at) VALUES (?, ?, ?, ?, ?)",
            (*key, record.granted_by, record.granted_at),
        )
        return True
    if await _exists(conn, "SELECT 1 FROM tasks WHERE id = ?", record.id):
        return False
    await conn.execute(
        "INSERT INTO tasks (id, from_agent, to_agent, title, description, status, priority, cubes, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.id, record.from_agent, record.to_agent, record.title, record.description, record.status,
            record.priority, _json.encode(record.cubes).decode(), record.created_at, record.updated_at,
        ),
    )  # fmt: skip
    await conn.execute_many(
        "INSERT INTO task_notes (task_id, agent, at, text) VALUES (?, ?, ?, ?)",
        [(record.id, n.agent, n.at, n.text) for n in record.notes],
    )
    return True


async def export_setup(store: Store) -> AsyncIterator[SetupRecord]:
    """Cubes, agents, groups, grants and tasks, in the order an import needs them."""
    settings = msgspec.json.Decoder(CubeSettings).decode
    cubes_of = msgspec.json.Decoder(list[str]).decode
    async with store.read() as conn:
        for row in await conn.rows(
            "SELECT name, owner, description, created_at, settings FROM cubes ORDER BY id"
        ):
            yield CubeRecord(
                name=row["name"], owner=row["owner"], description=row["description"],
                created_at=row["created_at"], settings=settings(row["settings"]),
            )  # fmt: skip
        for row in await conn.rows(
            "SELECT name, created_at, last_seen_at, disabled_at FROM agents ORDER BY id"
        ):
            yield AgentRecord(
                name=row["name"], created_at=row["created_at"], last_seen_at=row["last_seen_at"],
                disabled_at=row["disabled_at"],
            )  # fmt: skip
        members: dict[int, list[GroupMember]] = {}
        for row in await conn.rows(
            "SELECT group_id, agent, added_at FROM group_members ORDER BY group_id, agent"
        ):
            members.setdefault(row["group_id"], []).append(
                GroupMember(agent=row["agent"], added_at=row["added_at"])
            )
        for row in await conn.rows("SELECT id, name, created_at FROM groups ORDER BY id"):
            yield GroupRecord(
                name=row["name"], created_at=row["created_at"], members=members.get(row["id"], [])
            )
        for row in await conn.rows(
            "SELECT c.name AS cube, g.grantee, g.permission, g.granted_by, g.granted_at"
            " FROM cube_grants g JOIN cubes c ON c.id = g.cube_id ORDER BY c.id, g.grantee, g.permission"
        ):
            yield GrantRecord(
                cube=row["cube"], grantee=row["grantee"], permission=row["permission"],
                granted_by=row["granted_by"], granted_at=row["granted_at"],
            )  # fmt: skip
        notes: dict[str, list[TaskNote]] = {}
        for row in await conn.rows("SELECT task_id, agent, at, text FROM task_notes ORDER BY id"):
            notes.setdefault(row["task_id"], []).append(
                TaskNote(agent=row["agent"], at=row["at"], text=row["text"])
            )
        for row in await conn.rows(
            "SELECT id, from_agent, to_agent, title, description, status, priority, cubes, created_at,"
            " updated_at FROM tasks ORDER BY created_at, id"
        ):
            yield TaskRecord(
                id=row["id"], from_agent=row["from_agent"], to_agent=row["to_agent"], title=row["title"],
                description=row["description"], status=row["status"], priority=row["priority"],
                cubes=cubes_of(row["cubes"]), created_at=row["created_at"], updated_at=row["updated_at"],
                notes=notes.get(row["id"], []),
            )  # fmt: skip
