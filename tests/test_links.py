"""Links between memories: typed and directed, checked by the same policy as the memories they join (a link
never shows an end the reader may not read), hidden while an end is deleted, carried by export and import."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import pytest
from mcp import Client

from daemon import (
    RELATIONS,
    Agent,
    Conflict,
    InvalidInput,
    MemoryLink,
    NewMemory,
    NotFound,
    PermissionDenied,
    Services,
    agent_named,
    load_config,
    open_store_services,
)
from daemon.links import MAX_NODES
from tests.conftest import BOTH, RunningDaemon, free_port, mcp_client, write_config
from tests.conftest import memos_at as memos
from tests.test_handoff import subscribed
from tests.test_mcp_http import call, call_error

pytestmark = pytest.mark.anyio
BACKENDS = BOTH


async def _agents(services: Services, *names: str) -> list[Agent]:
    """The agents, in one group as the machine's owner puts them, so they can name one another."""
    await services.groups.add("people")
    for name in names:
        await services.identities.add(name)
        await services.groups.add_member("people", name)
    return [agent_named(name) for name in names]


async def _add(services: Services, agent: Agent, content: str, cube: str | None = None) -> str:
    return (await services.additions.add(agent, cube, NewMemory(content=content))).id


def _link(relation: str, direction: str, memory_id: str, cube: str) -> MemoryLink:
    return MemoryLink(relation=relation, direction=direction, id=memory_id, cube=cube)  # type: ignore[arg-type]


async def test_a_link_shows_from_both_ends_and_linking_again_changes_nothing(
    lexical_services: Services,
) -> None:
    s = lexical_services
    (alice,) = await _agents(s, "alice")
    decision = await _add(s, alice, "We chose Postgres for the billing service")
    project = await _add(s, alice, "The billing service bills customers monthly")

    first = await s.links.link(alice, decision, project, "about")
    again = await s.links.link(alice, decision, project, "about")

    assert (first.linked, again.linked) == (["about"], [])
    assert (first.from_cube, first.to_cube) == ("@alice", "@alice")
    assert await s.links.links_of(alice, decision) == [_link("about", "out", project, "@alice")]
    assert await s.links.links_of(alice, project) == [_link("about", "in", decision, "@alice")]
    assert (await s.links.get(alice, decision)).links == [_link("about", "out", project, "@alice")]
    entries = await s.audit.entries(agent="alice")
    assert [(e.action, e.target, e.detail) for e in entries if e.action == "memory_link"] == [
        ("memory_link", decision, f"about {project}")
    ]


async def test_unlink_removes_one_relation_or_every_one_and_is_idempotent(lexical_services: Services) -> None:
    s = lexical_services
    (alice,) = await _agents(s, "alice")
    a, b = await _add(s, alice, "step two"), await _add(s, alice, "step one")
    for relation in ("follows", "part_of", "relates_to"):
        await s.links.link(alice, a, b, relation)

    one = await s.links.unlink(alice, a, b, "part_of")
    rest = await s.links.unlink(alice, a, b)
    nothing = await s.links.unlink(alice, a, b)

    assert (one.unlinked, rest.unlinked, nothing.unlinked) == (["part_of"], ["follows", "relates_to"], [])
    assert await s.links.links_of(alice, a) == []
    actions = [e.action for e in await s.audit.entries(agent="alice")]
    assert actions.count("memory_unlink") == 2  # the call that removed nothing changed nothing


async def test_bad_links_are_refused_naming_what_was_wrong(lexical_services: Services) -> None:
    s = lexical_services
    (alice,) = await _agents(s, "alice")
    a, b = await _add(s, alice, "one"), await _add(s, alice, "two")

    with pytest.raises(InvalidInput) as unknown:
        await s.links.link(alice, a, b, "likes")
    assert str(unknown.value) == f"relation: 'likes' is not one of: {', '.join(RELATIONS)}"
    with pytest.raises(InvalidInput, match="supersession is made with memory_supersede"):
        await s.links.link(alice, a, b, "supersedes")
    with pytest.raises(InvalidInput, match="a memory cannot be linked to itself"):
        await s.links.link(alice, a, a, "about")
    with pytest.raises(InvalidInput, match="to_id: '' is not a memory id"):
        await s.links.link(alice, a, "", "about")
    with pytest.raises(NotFound, match="no memory with id 'mem_0000000000000000'"):
        await s.links.link(alice, a, "mem_0000000000000000", "about")
    with pytest.raises(NotFound, match="no memory with id 'mem_0000000000000000'"):
        await s.links.link(alice, "mem_0000000000000000", b, "about")
    await s.memories.delete(alice, b)
    with pytest.raises(Conflict, match=f"memory {b} is deleted; memory_restore it"):
        await s.links.link(alice, a, b, "about")
    assert await s.links.links_of(alice, a) == []


async def test_linking_to_an_unreadable_memory_is_not_found_exactly_like_a_missing_one(
    lexical_services: Services,
) -> None:
    s = lexical_services
    alice, bob = await _agents(s, "alice", "bob")
    secret = await _add(s, alice, "Alice's salary is 100k")
    mine = await _add(s, bob, "Bob's notes")
    missing = "mem_" + "f" * 16

    with pytest.raises(NotFound) as unreadable:
        await s.links.link(bob, mine, secret, "about")
    with pytest.raises(NotFound) as absent:
        await s.links.link(bob, mine, missing, "about")

    assert str(unreadable.value).replace(secret, "ID") == str(absent.value).replace(missing, "ID")
    with pytest.raises(NotFound):
        await s.links.unlink(bob, mine, secret)
    with pytest.raises(NotFound):
        await s.links.link(bob, secret, mine, "about")  # nor from one
    with pytest.raises(NotFound):
        await s.links.neighbourhood(bob, secret)


async def test_a_link_needs_write_on_the_from_memory_and_read_on_the_to_memory(
    lexical_services: Services,
) -> None:
    s = lexical_services
    alice, bob = await _agents(s, "alice", "bob")
    await s.cubes.create(alice, "team-x", "shared")
    team = await _add(s, alice, "The launch is on 3 March", "team-x")
    await s.cubes.share(alice, "team-x", "bob", "read")
    mine = await _add(s, bob, "I must prepare the launch demo")

    with pytest.raises(PermissionDenied, match="not write"):
        await s.links.link(bob, team, mine, "relates_to")
    made = await s.links.link(bob, mine, team, "about")  # from his own cube, to one he may read

    assert (made.from_cube, made.to_cube) == ("@bob", "team-x")
    assert await s.links.links_of(alice, team) == []  # alice may not read @bob: the link is not hers to see


async def test_a_link_disappears_for_a_reader_who_loses_access_to_one_end(lexical_services: Services) -> None:
    """Steps: alice links a team-x memory to one in her cube `plans`; bob (reader of team-x) does not see the
    link; alice shares `plans` with bob: he sees it; she unshares it: it is gone from his results again,
    from get, history links and the neighbourhood alike."""
    s = lexical_services
    alice, bob = await _agents(s, "alice", "bob")
    for cube in ("team-x", "plans"):
        await s.cubes.create(alice, cube, "")
    team = await _add(s, alice, "The launch is on 3 March", "team-x")
    plan = await _add(s, alice, "Plan: announce the launch at the conference", "plans")
    await s.links.link(alice, plan, team, "about")
    await s.cubes.share(alice, "team-x", "bob", "read")

    async def bob_sees() -> tuple[list[MemoryLink], list[str]]:
        around = await s.links.neighbourhood(bob, team)
        return (await s.links.get(bob, team)).links, [node.id for node in around.nodes]

    assert await bob_sees() == ([], [team])
    await s.cubes.share(alice, "plans", "bob", "read")
    assert await bob_sees() == ([_link("about", "in", plan, "plans")], [team, plan])
    await s.cubes.unshare(alice, "plans", "bob", None)
    assert await bob_sees() == ([], [team])
    assert (await s.links.neighbourhood(bob, team)).links == []


async def test_links_of_a_deleted_memory_are_hidden_until_it_is_restored(lexical_services: Services) -> None:
    s = lexical_services
    (alice,) = await _agents(s, "alice")
    a, b = await _add(s, alice, "Carol leads the API team"), await _add(s, alice, "The API team")
    await s.links.link(alice, a, b, "part_of")

    await s.memories.delete(alice, b)
    assert await s.links.links_of(alice, a) == []
    assert await s.links.links_of(alice, b) == []  # a deleted memory shows no links either
    await s.memories.restore(alice, b)
    assert await s.links.links_of(alice, a) == [_link("part_of", "out", b, "@alice")]


async def test_supersession_shows_beside_the_links_without_being_stored_as_one(
    lexical_services: Services,
) -> None:
    s = lexical_services
    (alice,) = await _agents(s, "alice")
    paris = await _add(s, alice, "Bob lives in Paris")
    berlin = await s.additions.add(alice, None, NewMemory(content="Bob moved to Berlin"), supersedes=[paris])

    assert await s.links.links_of(alice, berlin.id) == [_link("supersedes", "out", paris, "@alice")]
    assert await s.links.links_of(alice, paris) == [_link("supersedes", "in", berlin.id, "@alice")]
    with pytest.raises(InvalidInput, match="supersession is made with memory_supersede"):
        await s.links.unlink(alice, berlin.id, paris, "supersedes")


async def test_the_neighbourhood_follows_links_both_ways_up_to_two_hops(lexical_services: Services) -> None:
    """A chain a -> b <- c -> d: from a, depth 1 reaches b; depth 2 reaches c as well, not d."""
    s = lexical_services
    (alice,) = await _agents(s, "alice")
    a, b, c, d = [await _add(s, alice, f"memory {name}") for name in "abcd"]
    await s.links.link(alice, a, b, "about")
    await s.links.link(alice, c, b, "about")
    await s.links.link(alice, c, d, "follows")

    near = await s.links.neighbourhood(alice, a, depth=1)
    far = await s.links.neighbourhood(alice, a)

    assert [(n.id, n.depth) for n in near.nodes] == [(a, 0), (b, 1)]
    assert sorted((n.id, n.depth) for n in far.nodes) == sorted([(a, 0), (b, 1), (c, 2)])
    assert {(e.from_id, e.relation, e.to_id) for e in far.links} == {(a, "about", b), (c, "about", b)}
    with pytest.raises(InvalidInput, match="depth must be from 1 to 2, got 3"):
        await s.links.neighbourhood(alice, a, depth=3)


async def test_a_neighbourhood_stops_at_its_node_limit_and_says_so(lexical_services: Services) -> None:
    s = lexical_services
    (alice,) = await _agents(s, "alice")
    hub = await _add(s, alice, "The company all-hands")
    spokes = (
        await s.additions.add_batch(
            alice, None, [NewMemory(content=f"attendee {i}") for i in range(MAX_NODES)]
        )
    ).ids
    for spoke in spokes:
        await s.links.link(alice, spoke, hub, "part_of")

    around = await s.links.neighbourhood(alice, hub)

    assert around.truncated and len(around.nodes) == MAX_NODES
    assert len(around.links) == MAX_NODES - 1  # exactly the links between the memories shown
    assert not (await s.links.neighbourhood(alice, spokes[0], depth=1)).truncated


# Over MCP, through a real daemon.


@pytest.fixture(scope="module")
def tokens(daemon: RunningDaemon) -> dict[str, str]:
    return {name: daemon.add_agent(name) for name in ("lena", "omar")}


async def _read(client: Client, uri: str) -> dict[str, object]:
    result = await client.read_resource(uri)
    return json.loads(result.contents[0].text)  # type: ignore[union-attr]


async def test_link_unlink_get_history_and_neighbourhood_over_mcp(
    daemon: RunningDaemon, tokens: dict[str, str]
) -> None:
    """Steps: lena adds two memories and links them (twice, and once more with an idempotency key replayed);
    memory_get and memory_history show the link from each end; the neighbourhood resource shows both; a bad
    relation is an "Invalid input" naming the relations; memory_unlink removes it."""
    async with mcp_client(daemon.url, tokens["lena"]) as client:
        note = (await call(client, "memory_add", content="Lena's review of the Q3 roadmap"))["id"]
        roadmap = (await call(client, "memory_add", content="The Q3 roadmap has three milestones"))["id"]

        made = await call(client, "memory_link", from_id=note, to_id=roadmap, relation="about")
        assert made == {
            "from_id": note, "from_cube": "@lena", "to_id": roadmap, "to_cube": "@lena",
            "linked": ["about"], "unlinked": [],
        }  # fmt: skip
        assert (await call(client, "memory_link", from_id=note, to_id=roadmap, relation="about"))[
            "linked"
        ] == []
        keyed = dict(from_id=note, to_id=roadmap, relation="derived_from", idempotency_key="k1")
        assert (await call(client, "memory_link", **keyed))["linked"] == ["derived_from"]
        assert (await call(client, "memory_link", **keyed))["linked"] == ["derived_from"]  # the first result

        got = await call(client, "memory_get", id=note)
        assert got["links"] == [
            {"relation": "about", "direction": "out", "id": roadmap, "cube": "@lena"},
            {"relation": "derived_from", "direction": "out", "id": roadmap, "cube": "@lena"},
        ]
        assert (await _read(client, f"memos://memories/{note}"))["links"] == got["links"]
        history = await call(client, "memory_history", id=roadmap)
        assert [(link["relation"], link["direction"], link["id"]) for link in history["links"]] == [
            ("about", "in", note),
            ("derived_from", "in", note),
        ]
        around = await _read(client, f"memos://memories/{note}/neighbourhood")
        assert [node["id"] for node in around["nodes"]] == [note, roadmap]  # type: ignore[index]
        assert len(around["links"]) == 2  # type: ignore[arg-type]

        error = await call_error(client, "memory_link", from_id=note, to_id=roadmap, relation="cites")
        assert error.endswith(f"Invalid input: relation: 'cites' is not one of: {', '.join(RELATIONS)}")
        self_link = await call_error(client, "memory_link", from_id=note, to_id=note, relation="about")
        assert "Invalid input: from_id and to_id are both" in self_link

        removed = await call(client, "memory_unlink", from_id=note, to_id=roadmap)
        assert removed["unlinked"] == ["about", "derived_from"] and removed["to_cube"] == "@lena"
        assert (await call(client, "memory_get", id=note))["links"] == []


async def test_over_mcp_a_link_to_another_agents_private_memory_is_not_found_and_never_shown(
    daemon: RunningDaemon, tokens: dict[str, str]
) -> None:
    """Steps: omar's private memory; lena cannot link to it (Not found, the words a missing id gets); omar
    shares a cube with lena, links its memory to his private one: lena sees the team memory without the
    link; after cube_unshare she does not see the team memory at all."""
    async with mcp_client(daemon.url, tokens["omar"]) as omar, mcp_client(daemon.url, tokens["lena"]) as lena:
        private = (await call(omar, "memory_add", content="Omar's private health note"))["id"]
        mine = (await call(lena, "memory_add", content="Lena's note"))["id"]
        denied = await call_error(lena, "memory_link", from_id=mine, to_id=private, relation="about")
        missing = await call_error(
            lena, "memory_link", from_id=mine, to_id="mem_" + "0" * 16, relation="about"
        )
        assert re.sub(r"mem_\w+", "ID", denied) == re.sub(r"mem_\w+", "ID", missing)
        assert "Not found: no memory with id" in denied

        daemon.relate("omar-and-lena", "omar", "lena")  # so omar can name lena in cube_share
        await call(omar, "cube_create", name="omar-team")
        team = (await call(omar, "memory_add", content="Team offsite in May", cube="omar-team"))["id"]
        await call(omar, "memory_link", from_id=team, to_id=private, relation="relates_to")
        await call(omar, "cube_share", cube="omar-team", grantee="lena", permission="read")
        assert (await call(lena, "memory_get", id=team))["links"] == []
        around = await _read(lena, f"memos://memories/{team}/neighbourhood")
        assert (around["nodes"], around["links"]) == (
            [{"id": team, "cube": "omar-team", "kind": "note", "content": "Team offsite in May", "depth": 0}],
            [],
        )
        assert len((await call(omar, "memory_get", id=team))["links"]) == 1

        await call(omar, "cube_unshare", cube="omar-team", grantee="lena")
        gone = await call_error(lena, "memory_history", id=team)
        assert "Not found: " in gone


async def test_over_mcp_the_owner_removes_a_dangling_link_without_read_on_its_target(
    daemon: RunningDaemon, tokens: dict[str, str]
) -> None:
    """Steps: omar shares `omar-plans` with lena (read); lena links her note to a memory in it; omar deletes
    that memory and unshares the cube: lena sees no link (the target is unreadable) but can still remove it
    with memory_unlink, whose answer names no cube for the target; unlinking again, with no link left, is
    "Not found" in the very words a missing id gets; omar's own view of his memory never had lena's link."""
    async with mcp_client(daemon.url, tokens["omar"]) as omar, mcp_client(daemon.url, tokens["lena"]) as lena:
        daemon.relate("plans-readers", "omar", "lena")
        await call(omar, "cube_create", name="omar-plans")
        plan = (await call(omar, "memory_add", content="Plan: move the offsite to June", cube="omar-plans"))[
            "id"
        ]
        await call(omar, "cube_share", cube="omar-plans", grantee="lena", permission="read")
        note = (await call(lena, "memory_add", content="Lena: book the June venue"))["id"]
        await call(lena, "memory_link", from_id=note, to_id=plan, relation="about")

        await call(omar, "memory_delete", id=plan)
        await call(omar, "cube_unshare", cube="omar-plans", grantee="lena")
        assert (await call(lena, "memory_get", id=note))["links"] == []

        removed = await call(lena, "memory_unlink", from_id=note, to_id=plan)
        assert removed == {
            "from_id": note, "from_cube": "@lena", "to_id": plan, "to_cube": None,
            "linked": [], "unlinked": ["about"],
        }  # fmt: skip
        again = await call_error(lena, "memory_unlink", from_id=note, to_id=plan)
        missing = await call_error(lena, "memory_unlink", from_id=note, to_id="mem_" + "0" * 16)
        assert "Not found: no memory with id" in again
        assert re.sub(r"mem_\w+", "ID", again) == re.sub(r"mem_\w+", "ID", missing)
        await call(omar, "memory_restore", id=plan)
        assert (await call(omar, "memory_get", id=plan))["links"] == []  # the link is gone, not hidden


@pytest.mark.parametrize("era", ["legacy", "auto"])
async def test_a_neighbourhood_subscriber_hears_of_a_new_link(
    daemon: RunningDaemon, tokens: dict[str, str], era: str
) -> None:
    """Steps: lena subscribes to a memory's neighbourhood; in another session she links a memory to it; the
    subscription reports the resource updated, and reading it shows the new link."""
    async with mcp_client(daemon.url, tokens["lena"]) as writer:
        centre = (await call(writer, "memory_add", content=f"[{era}] The onboarding checklist"))["id"]
        step = (await call(writer, "memory_add", content=f"[{era}] Step one: get a laptop"))["id"]
        uri = f"memos://memories/{centre}/neighbourhood"
        notified = anyio.Event()
        async with subscribed(daemon.url, tokens["lena"], era, uri, notified) as reader:
            await call(writer, "memory_link", from_id=step, to_id=centre, relation="part_of")
            with anyio.fail_after(30):
                await notified.wait()
            around = await _read(reader, uri)
        assert around["links"] == [
            {
                "from_id": step,
                "from_cube": "@lena",
                "relation": "part_of",
                "to_id": centre,
                "to_cube": "@lena",
            }
        ]


async def test_export_and_import_carry_links_and_a_second_import_adds_nothing(tmp_path: Path) -> None:
    """Steps: in one data dir, link memories across two cubes (one link points at a memory that is then
    deleted); `memos export --all`; import into a fresh data dir: the same links from both ends; export
    again: identical; import again: nothing added."""
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    source_config = write_config(source, port=free_port(), model="none")
    async with open_store_services(load_config(source_config, environ={"HOME": str(source)})) as s:
        (alice,) = await _agents(s, "alice")
        await s.cubes.create(alice, "team-x", "")
        a = await _add(s, alice, "Decision: ship on Friday")
        b = await _add(s, alice, "The release train", "team-x")
        c = await _add(s, alice, "An outdated plan")
        await s.links.link(alice, a, b, "about")
        await s.links.link(alice, b, a, "derived_from")
        await s.links.link(alice, a, c, "contradicts")
        await s.memories.delete(alice, c)
        before = {m: await s.links.links_of(alice, m) for m in (a, b)}
    exported = memos(source_config, "export", "--all").stdout
    line_of_a = next(json.loads(line) for line in exported.splitlines() if f'"id":"{a}"' in line)
    assert [(link["relation"], link["to"]) for link in line_of_a["links"]] == [
        ("about", b),
        ("contradicts", c),
    ]

    target_config = write_config(target, port=free_port(), model="none")
    memos(target_config, "import", "-", stdin=exported)
    assert memos(target_config, "export", "--all").stdout == exported
    again = memos(target_config, "import", "-", stdin=exported)
    assert again.stdout.startswith("0 added,")
    async with open_store_services(load_config(target_config, environ={"HOME": str(target)})) as s:
        assert {m: await s.links.links_of(alice, m) for m in (a, b)} == before
        await s.memories.restore(alice, c)
        assert _link("contradicts", "out", c, "@alice") in await s.links.links_of(alice, a)


async def test_import_refuses_a_bad_link_by_line_number(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port(), model="none")
    good = {"content": "x", "source_agent": "alice", "kind": "note", "id": "mem_00000000000000aa"}
    lines = [
        json.dumps({**good, "links": [{"relation": "likes", "to": "mem_00000000000000bb"}]}),
        json.dumps({**good, "links": [{"relation": "about", "to": "mem_00000000000000aa"}]}),
        json.dumps({**good, "links": [{"relation": "about", "to": "bob"}]}),
    ]
    result = memos(config, "import", "-", stdin="\n".join(lines) + "\n", check=False)
    assert (
        f"line 1: links.relation: 'likes' is not one of: {', '.join(RELATIONS)}"
        in result.stdout + result.stderr
    )
    assert "line 2: a memory cannot be linked to itself" in result.stdout + result.stderr
    assert "line 3: links.to 'bob' is not a memos id" in result.stdout + result.stderr
