"""Access control through the service API: a matrix of permission levels × operations, and the rules that
must hold whatever the level: no leaks in search or listings, denials that reveal nothing, audit entries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from daemon import (
    Agent,
    InvalidInput,
    MemoryChanges,
    MemosError,
    NewMemory,
    NotFound,
    PermissionDenied,
    SearchQuery,
    Services,
    agent_named,
)
from daemon.policy_rules import LEVEL, Rule, SourcedRule
from tests.conftest import BOTH

pytestmark = pytest.mark.anyio
BACKENDS = BOTH

Op = Callable[[Services, Agent, str], Awaitable[Any]]


async def setup_team(services: Services, bob_permission: str | None) -> tuple[Agent, Agent, str]:
    """alice owns team-x with one memory; bob holds `bob_permission` on it through a policy rule; all three
    are in the group "staff"."""
    await services.groups.add("staff")  # agents name only agents they are related to
    for name in ("alice", "bob", "carol"):
        await services.identities.add(name)
        await services.groups.add_member("staff", name)
    alice, bob = agent_named("alice"), agent_named("bob")
    await services.cubes.create(alice, "team-x", "shared work")
    memory = await services.additions.add(alice, "team-x", NewMemory(content="The launch date is 3 March"))
    rules = [Rule(cubes=["team-*"], agents=["bob"], permission=bob_permission)] if bob_permission else []
    services.access.install([SourcedRule(r, "test rule") for r in rules], ["test.toml"], "/test")
    return alice, bob, memory.id


OPERATIONS: dict[str, tuple[str, Op]] = {
    "search": (
        "read",
        lambda s, a, m: s.search.search(a, SearchQuery(query="launch date", cubes=["team-x"])),
    ),
    "list": ("read", lambda s, a, m: s.memories.list(a, cubes=["team-x"])),
    "get": ("read", lambda s, a, m: s.memories.get(a, m)),
    "history": ("read", lambda s, a, m: s.memories.history(a, m)),
    "describe": ("read", lambda s, a, m: s.cubes.describe(a, "team-x")),
    "members": ("read", lambda s, a, m: s.cubes.members(a, "team-x")),
    "add": ("write", lambda s, a, m: s.additions.add(a, "team-x", NewMemory(content="bob was here"))),
    "add_batch": ("write", lambda s, a, m: s.additions.add_batch(a, "team-x", [NewMemory(content="b1")])),
    "update": ("write", lambda s, a, m: s.memories.update(a, m, MemoryChanges(content="changed"))),
    "delete": ("write", lambda s, a, m: s.memories.delete(a, m)),
    "restore": ("write", lambda s, a, m: s.memories.restore(a, m)),
    "share": ("share", lambda s, a, m: s.cubes.share(a, "team-x", "carol", "read")),
    "unshare": ("share", lambda s, a, m: s.cubes.unshare(a, "team-x", "carol", None)),
    "grant_admin": ("admin", lambda s, a, m: s.cubes.share(a, "team-x", "carol", "admin")),
}


@pytest.mark.parametrize("held", [None, "read", "write", "share", "admin"])
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_each_operation_is_allowed_exactly_at_its_level(
    lexical_services: Services, held: str | None, operation: str
) -> None:
    services = lexical_services
    alice, bob, memory_id = await setup_team(services, held)
    if operation == "unshare":
        await services.cubes.share(alice, "team-x", "carol", "read")  # something to take back
    needed, op = OPERATIONS[operation]
    allowed = held is not None and LEVEL[held] >= LEVEL[needed]
    if allowed:
        await op(services, bob, memory_id)
        return
    expected = NotFound if held is None else PermissionDenied
    with pytest.raises(expected):
        await op(services, bob, memory_id)
    assert (await services.memories.get(alice, memory_id)).content == "The launch date is 3 March"
    members = await services.cubes.members(alice, "team-x")
    assert [m.grantee for m in members.members if m.source.startswith("cube_share")] == (
        ["carol"] if operation == "unshare" else []
    )


async def test_a_refusal_reads_exactly_like_a_missing_cube(lexical_services: Services) -> None:
    _, bob, _ = await setup_team(lexical_services, None)
    messages = []
    for cube in ("team-x", "team-nonexistent"):
        with pytest.raises(NotFound) as caught:
            await lexical_services.additions.add(bob, cube, NewMemory(content="x"))
        messages.append(str(caught.value).replace(cube, "CUBE"))
    assert messages[0] == messages[1]


async def test_search_never_returns_a_memory_from_an_unreadable_cube_even_the_best_match(
    lexical_services: Services,
) -> None:
    _, bob, _ = await setup_team(lexical_services, None)
    await lexical_services.additions.add(bob, None, NewMemory(content="unrelated note about lunch"))
    found = await lexical_services.search.search(bob, SearchQuery(query="The launch date is 3 March"))
    assert {hit.cube for hit in found.results} <= {"@bob"}
    assert found.cubes == ["@bob"]


async def test_listings_show_only_readable_cubes(lexical_services: Services) -> None:
    services = lexical_services
    alice, bob, _ = await setup_team(services, None)
    assert [c.name for c in await services.cubes.list(bob)] == ["@bob"]
    services.access.install(
        [SourcedRule(Rule(cubes=["team-*"], agents=["bob"], permission="read"), "r")], [], "/"
    )
    assert [c.name for c in await services.cubes.list(bob)] == ["@bob", "team-x"]
    assert {c.name for c in await services.cubes.list(alice)} == {"@alice", "team-x"}


async def test_a_revoked_grant_stops_access_on_the_next_call(lexical_services: Services) -> None:
    services = lexical_services
    alice, bob, memory_id = await setup_team(services, None)
    await services.cubes.share(alice, "team-x", "bob", "read")
    assert (await services.memories.get(bob, memory_id)).id == memory_id
    await services.cubes.unshare(alice, "team-x", "bob", None)
    with pytest.raises(NotFound):
        await services.memories.get(bob, memory_id)


async def test_groups_receive_grants_and_lose_them_with_membership(lexical_services: Services) -> None:
    services = lexical_services
    alice, bob, memory_id = await setup_team(services, None)
    await services.groups.add("team")
    await services.groups.add_member("team", "bob")
    await services.cubes.share(alice, "team-x", "group:team", "write")
    await services.additions.add(bob, "team-x", NewMemory(content="bob's contribution"))
    await services.groups.remove_member("team", "bob")
    with pytest.raises(NotFound):
        await services.memories.get(bob, memory_id)


async def test_a_sharer_cannot_grant_more_than_it_holds(lexical_services: Services) -> None:
    _, bob, _ = await setup_team(lexical_services, "share")
    with pytest.raises(PermissionDenied, match="only an admin"):
        await lexical_services.cubes.share(bob, "team-x", "carol", "admin")
    await lexical_services.cubes.share(bob, "team-x", "carol", "share")


async def test_writes_share_changes_and_denials_are_audited(lexical_services: Services) -> None:
    services = lexical_services
    alice, bob, memory_id = await setup_team(services, None)
    with pytest.raises(NotFound):
        await services.memories.get(bob, memory_id)
    await services.cubes.share(alice, "team-x", "bob", "read")
    for _ in range(100):  # denials are written in the background, soon
        entries = await services.audit.entries(cubes=["team-x"])
        if any(e.outcome == "denied" for e in entries):
            break
        await anyio.sleep(0.02)
    seen = [(e.agent, e.action, e.outcome) for e in reversed(entries)]
    assert ("alice", "cube_create", "ok") in seen
    assert ("alice", "memory_add", "ok") in seen
    assert ("bob", "memory_get", "denied") in seen
    assert ("alice", "cube_share", "ok") in seen
    assert await services.cubes.administered(bob) == ["@bob"]


@pytest.mark.parametrize(
    "name",
    [
        "../team-x",
        "team-x/../../etc",
        "x'; DROP TABLE cubes;--",
        'x" OR 1=1',
        "team NEAR x",
        "tеam-x",  # a Cyrillic 'е' that looks like 'e'
        "ｔｅａｍ",  # fullwidth letters
        "a" * 65,
        "a" * 10_000,
        "\x00",
    ],
)
async def test_hostile_cube_names_are_refused_and_create_nothing(
    lexical_services: Services, name: str
) -> None:
    services = lexical_services
    alice, _, _ = await setup_team(services, None)
    before = await services.cubes.list(alice)
    with pytest.raises(InvalidInput, match="cube name"):
        await services.cubes.create(alice, name)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: services.additions.add(alice, name, NewMemory(content="x")),
        lambda: services.search.search(alice, SearchQuery(query="launch", cubes=[name])),
        lambda: services.cubes.share(alice, name, "bob", "read"),
    ]
    for call in calls:
        with pytest.raises(MemosError):
            await call()
    assert await services.cubes.list(alice) == before
