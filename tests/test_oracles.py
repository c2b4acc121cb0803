"""Existence oracles: what an agent can learn by probing names it has no business with — agents it is not
related to, cubes it cannot see — and what the audit log shows a cube's admins about earlier probes."""

from __future__ import annotations

import pytest

from daemon import Conflict, NewMemory, NotFound, SearchQuery, Services, agent_named
from daemon.policy_rules import Rule, SourcedRule
from tests.conftest import BOTH
from tests.test_policy_live import within

pytestmark = pytest.mark.anyio
BACKENDS = BOTH


async def refusal(call: object) -> str:
    with pytest.raises(NotFound) as refused:
        await call  # type: ignore[misc]
    return str(refused.value)


async def test_an_unrelated_agent_reads_exactly_like_one_that_does_not_exist(
    lexical_services: Services,
) -> None:
    """Steps: alice owns a cube; bob exists but shares nothing with her, "ghost" does not exist; sharing
    with or handing a task to either is refused with the same words; a group in common (bob), a policy
    rule naming both (carol) or a cube of the other's that alice reads (dave) lets her name them, and
    "ghost" still reads as missing."""
    services = lexical_services
    for name in ("alice", "bob", "carol", "dave"):
        await services.identities.add(name)
    alice = agent_named("alice")
    await services.cubes.create(alice, "plans")

    async def refusals(name: str) -> tuple[str, str]:
        shared = await refusal(services.cubes.share(alice, "plans", name, "read"))
        handed = await refusal(services.tasks.handoff(alice, name, "Review the plans"))
        return shared.replace(name, "NAME"), handed.replace(name, "NAME")

    assert await refusals("bob") == await refusals("ghost")
    assert "no agent 'bob' you can share with" in (await refusals("bob"))[0].replace("NAME", "bob")
    assert "no agent 'bob' you can hand the task to" in (await refusals("bob"))[1].replace("NAME", "bob")

    await services.groups.add("planning")
    await services.groups.add_member("planning", "alice")
    await services.groups.add_member("planning", "bob")
    await services.cubes.share(alice, "plans", "bob", "read")  # a group in common
    assert (await services.tasks.handoff(alice, "bob", "Review the plans")).to_agent == "bob"

    services.access.install(
        [SourcedRule(Rule(cubes=["plans"], agents=["alice", "carol"], permission="read"), "t.toml rule 1")],
        ["t.toml"],
        "/test",
    )
    await services.cubes.share(alice, "plans", "carol", "write")  # a policy rule naming both

    dave = agent_named("dave")
    await refusal(services.cubes.share(alice, "plans", "dave", "read"))
    await services.cubes.create(dave, "dave-notes")
    await services.cubes.share(dave, "dave-notes", "*", "read")
    await services.cubes.share(alice, "plans", "dave", "read")  # alice reads a cube dave owns
    assert await refusals("ghost") == await refusals("nobody")


async def test_creating_a_taken_name_says_the_same_whether_or_not_the_cube_is_visible(
    lexical_services: Services,
) -> None:
    services = lexical_services
    for name in ("alice", "bob"):
        await services.identities.add(name)
    alice, bob = agent_named("alice"), agent_named("bob")
    await services.cubes.create(alice, "hidden-plans")
    await services.cubes.create(alice, "open-plans")
    await services.cubes.share(alice, "open-plans", "*", "read")
    messages = []
    for name in ("hidden-plans", "open-plans"):
        with pytest.raises(Conflict) as refused:
            await services.cubes.create(bob, name)
        messages.append(str(refused.value).replace(name, "NAME"))
    assert messages[0] == messages[1]
    assert "cubes you cannot see included" in messages[0]


async def test_probes_of_a_name_before_its_cube_exists_are_not_shown_to_its_admin(
    lexical_services: Services,
) -> None:
    """Steps: mallory probes the name "launch" (describe, add, search) while no such cube exists; the
    machine's owner sees the probes in the audit log; then alice creates "launch" and reads its audit: it
    holds her own cube_create and bob's later denial, and nothing of mallory's earlier probes."""
    services = lexical_services
    for name in ("alice", "bob", "mallory"):
        await services.identities.add(name)
    alice, bob, mallory = agent_named("alice"), agent_named("bob"), agent_named("mallory")
    for probe in (
        services.cubes.describe(mallory, "launch"),
        services.additions.add(mallory, "launch", NewMemory(content="probe")),
        services.search.search(mallory, SearchQuery(query="launch date", cubes=["launch"])),
    ):
        await refusal(probe)

    async def probes_logged() -> bool:  # denials are written in the background, soon
        return len(await services.audit.entries(agent="mallory")) == 3

    await within(10.0, probes_logged)
    owner_view = await services.audit.entries(agent="mallory")
    assert {(e.target, e.outcome, e.detail) for e in owner_view} == {("launch", "denied", "no such cube")}

    await services.cubes.create(alice, "launch")
    await refusal(services.cubes.describe(bob, "launch"))

    async def bob_logged() -> bool:
        return bool(await services.audit.entries(agent="bob"))

    await within(10.0, bob_logged)
    admin_view = await services.audit.entries(cubes=await services.cubes.administered(alice))
    assert [(e.agent, e.action, e.outcome) for e in admin_view if e.cube == "launch"] == [
        ("bob", "cube_describe", "denied"),
        ("alice", "cube_create", "ok"),
    ]
    assert "mallory" not in {e.agent for e in admin_view}
