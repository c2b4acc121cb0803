"""One agent's load costs another agent only its fair share: searches take turns per agent when the daemon is
busy, and a write rebuilds only the context packs it can change."""

from __future__ import annotations

import threading

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon import NewMemory, SearchQuery, Services, agent_named
from daemon.events import Change, CubesChanged, MemoryChanged, PackReady
from daemon.fairness import FairGate
from daemon.scheduler import JobClass
from tests.conftest import hold_every_search_slot

pytestmark = pytest.mark.anyio


async def test_a_burst_from_one_agent_lets_another_agent_in_at_its_next_turn() -> None:
    """Steps: one slot, held by A; A queues ten more calls, then B queues one; as slots free, B is admitted
    after one of A's, not after all ten, and A's calls all run after that in their own order."""
    gate = FairGate(slots=1)
    admitted: list[str] = []
    release = anyio.Event()

    async def call(agent: str, label: str, hold: anyio.Event | None = None) -> None:
        async with gate.slot(agent):
            admitted.append(label)
            if hold is not None:
                await hold.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "a", "a0", release)
        await anyio.wait_all_tasks_blocked()
        for i in range(1, 11):
            tg.start_soon(call, "a", f"a{i}")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(call, "b", "b0")
        await anyio.wait_all_tasks_blocked()
        assert (gate.busy, gate.waiting("a"), gate.waiting("b")) == (1, 10, 1)
        release.set()
    assert admitted == ["a0", "a1", "b0", *(f"a{i}" for i in range(2, 11))]
    assert (gate.busy, gate.waiting()) == (0, 0)


def round_robin(arrivals: list[str]) -> list[str]:
    """The order the gate promises for calls queued behind a held slot: agents in the order they first
    queued, one call each per turn."""
    queues: dict[str, list[int]] = {}
    for index, agent in enumerate(arrivals):
        queues.setdefault(agent, []).append(index)
    order = []
    while queues:
        for agent in list(queues):
            order.append(f"{agent}{queues[agent].pop(0)}")
            if not queues[agent]:
                del queues[agent]
    return order


@given(st.lists(st.sampled_from("abcd"), min_size=1, max_size=30))
def test_queued_calls_are_admitted_one_per_agent_per_turn(arrivals: list[str]) -> None:
    async def scenario() -> list[str]:
        gate, admitted, release = FairGate(slots=1), [], anyio.Event()

        async def call(agent: str, label: str, hold: anyio.Event | None = None) -> None:
            async with gate.slot(agent):
                admitted.append(label)
                if hold is not None:
                    await hold.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "holder", "holder", release)
            await anyio.wait_all_tasks_blocked()
            for index, agent in enumerate(arrivals):
                tg.start_soon(call, agent, f"{agent}{index}")
                await anyio.wait_all_tasks_blocked()
            release.set()
        return admitted[1:]

    assert anyio.run(scenario) == round_robin(arrivals)


async def test_a_cancelled_waiter_gives_up_its_place_and_leaks_no_slot() -> None:
    gate = FairGate(slots=1)
    release = anyio.Event()

    async def hold() -> None:
        async with gate.slot("a"):
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        await anyio.wait_all_tasks_blocked()
        with anyio.move_on_after(0.05):
            async with gate.slot("b"):
                raise AssertionError("admitted while the only slot was held")
        assert gate.waiting() == 0
        release.set()
    async with gate.slot("c"):
        assert gate.busy == 1
    assert gate.busy == 0


async def test_many_concurrent_searches_from_one_agent_do_not_starve_another(
    lexical_services: Services,
) -> None:
    """Steps: A and B each have memories; A starts 20 searches at once, B one search right after; when B's
    search returns, most of A's are still to come (B waited for its turn, not for A's whole burst)."""
    services = lexical_services
    for name in ("burst", "calm"):
        await services.identities.add(name)
        await services.additions.add_batch(
            agent_named(name),
            None,
            [
                NewMemory(content=f"Note {i} about the deployment pipeline and its rollback plan")
                for i in range(40)
            ],
        )
    finished: list[str] = []

    async def search(name: str) -> None:
        await services.search.search(agent_named(name), SearchQuery(query="deployment rollback", k=10))
        finished.append(name)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(search, "burst")
        await anyio.lowlevel.checkpoint()  # A's searches have taken the slots or queued
        assert services.search.gate.waiting("burst") >= 10
        tg.start_soon(search, "calm")
    before_calm = finished.index("calm")
    slots = services.search.gate.slots
    assert before_calm <= 2 * slots + 2, finished  # the running ones, one turn of A's, what ran beside B


async def test_short_reads_are_answered_while_searches_hold_every_slot(lexical_services: Services) -> None:
    """Steps: A stores a memory; searches (of B) hold every search slot and, in turn, every long reader, as
    running searches do, and one more search waits at the gate; A's token check, get, listing and a cube
    listing are answered meanwhile; once the slots free, the waiting search runs."""
    services = lexical_services
    _, token = await services.identities.add("reader")
    await services.identities.add("searcher")
    reader, searcher = agent_named("reader"), agent_named("searcher")
    memory = await services.additions.add(reader, None, NewMemory(content="The billing service moves to Go"))
    gate, release = services.search.gate, threading.Event()

    async def one_more_search() -> None:
        await services.search.search(searcher, SearchQuery(query="billing service", k=5))

    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            await hold_every_search_slot(tg, services, [release] * gate.slots, searcher.name)
        tg.start_soon(one_more_search)
        await anyio.wait_all_tasks_blocked()
        assert gate.waiting(searcher.name) == 1
        with anyio.fail_after(10):
            assert await services.identities.authenticate(token) == reader
            assert (
                await services.memories.get(reader, memory.id)
            ).content == "The billing service moves to Go"
            assert [m.id for m in (await services.memories.list(reader)).memories] == [memory.id]
            assert reader.home_cube in [cube.name for cube in await services.cubes.list(reader)]
        assert gate.waiting(searcher.name) == 1  # the searches still held every slot
        release.set()
    assert (gate.busy, gate.waiting()) == (0, 0)


async def test_a_write_rebuilds_only_the_packs_whose_scope_and_reader_it_touches(
    lexical_services: Services,
) -> None:
    """Steps: 300 open tasks — 150 scoped to a cube nobody writes, 148 without scope handed to an agent that
    cannot read the written cube, one scoped to it and one without scope handed to an agent that can; a
    memory is written to that cube; exactly those two packs are rebuilt, once each. (A change of the cube's
    grants concerns the 150 packs whose scope may hold it; a policy reload all 300.)"""
    services = lexical_services
    await services.groups.add("staff")  # so the lead can name the others
    for name in ("lead", "worker", "outsider"):
        await services.identities.add(name)
        await services.groups.add_member("staff", name)
    lead = agent_named("lead")
    for cube in ("hot", "cold"):
        await services.cubes.create(lead, cube)
        await services.cubes.share(lead, cube, "worker", "read")
    expected = set()
    for i in range(150):
        await services.tasks.handoff(lead, "worker", f"Cold case {i}", cubes=["cold"])
    for i in range(148):
        await services.tasks.handoff(lead, "outsider", f"Outside job {i}")
    expected.add(("worker", (await services.tasks.handoff(lead, "worker", "Hot path", cubes=["hot"])).id))
    expected.add(("worker", (await services.tasks.handoff(lead, "worker", "Anything at all")).id))
    await idle(services)

    write = MemoryChanged(cube="hot", memory_id="mem_probe")
    affected = await services.packs.affected([write, write])
    assert {(reader, task_id) for task_id, reader in affected} == expected
    assert set(affected.values()) == {JobClass.BACKGROUND}
    regranted = await services.packs.affected([CubesChanged("hot")])  # its grants changed: anyone's may have
    assert len(regranted) == 150 and expected <= {(reader, task_id) for task_id, reader in regranted}
    assert len(await services.packs.affected([CubesChanged()])) == 300  # a policy reload: every open pack

    rebuilt: list[tuple[str, str]] = []
    two_rebuilt = anyio.Event()

    def on_change(change: Change) -> None:
        if isinstance(change, PackReady):
            rebuilt.append((change.agent, change.task_id))
            if len(rebuilt) >= 2:
                two_rebuilt.set()

    unsubscribe = services.hub.subscribe(on_change)
    try:
        await services.additions.add(
            lead, "hot", NewMemory(content="The hot path caches tokens for a minute")
        )
        with anyio.fail_after(30):
            await two_rebuilt.wait()
        await idle(services)
    finally:
        unsubscribe()
    assert sorted(rebuilt) == sorted(expected)


async def idle(services: Services) -> None:
    """Wait until the scheduler has had nothing queued or running for a few checks in a row (changes reach it
    through the packs' own queue, a step later)."""
    quiet = 0
    with anyio.fail_after(120):
        while quiet < 5:
            await anyio.sleep(0.02)
            busy = any(m["queued"] or m["running"] for m in services.scheduler.snapshot().values())
            quiet = 0 if busy else quiet + 1
