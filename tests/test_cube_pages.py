"""Reading a big cube a page at a time without reading all of it: the dashboard's cube page and its chart."""

from __future__ import annotations

import pytest

from daemon import MemoryFilter, NewMemory, NotFound, Services, agent_named
from tests.conftest import BOTH

pytestmark = pytest.mark.anyio
BACKENDS = BOTH


async def _fill(services: Services, count: int, rare_first: int, topic: str = "atlas") -> None:
    """`count` memories in alice's cube, the oldest `rare_first` of them tagged "rare"."""
    alice = agent_named("alice")
    items = [
        NewMemory(
            content=f"Memory number {i} about the {topic} project", tags=["rare"] if i < rare_first else []
        )
        for i in range(count)
    ]
    await services.additions.add_batch(alice, None, items)


@pytest.mark.sqlite_only  # SQLite's query plans
async def test_a_cube_page_and_its_count_are_read_from_indexes_not_from_every_row(
    lexical_services: Services,
) -> None:
    await lexical_services.identities.add("alice")
    async with lexical_services.store.read() as conn:
        plan = await conn.rows(
            "EXPLAIN QUERY PLAN SELECT m.seq FROM memories m WHERE m.cube_id IN (?) AND m.deleted_at IS NULL"
            " AND m.superseded_by IS NULL AND m.seq < ? ORDER BY m.seq DESC LIMIT 26",
            (1, 10**9),
        )
        with_deleted = await conn.rows(
            "EXPLAIN QUERY PLAN SELECT m.seq FROM memories m WHERE m.cube_id IN (?) AND m.seq < ?"
            " ORDER BY m.seq DESC LIMIT 26",
            (1, 10**9),
        )
        count = await conn.rows(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM memories m WHERE m.cube_id = ? AND m.deleted_at IS NULL",
            (1,),
        )
    details = " ".join(str(row["detail"]) for row in plan)
    assert "USING INDEX memories_" in details and "TEMP B-TREE" not in details
    assert "TEMP B-TREE" not in " ".join(str(row["detail"]) for row in with_deleted)
    assert "memories_live_by_cube" in " ".join(str(row["detail"]) for row in count)


async def test_a_rare_filter_pages_through_a_bounded_window_and_finds_everything(
    lexical_services: Services,
) -> None:
    """Steps: 60 memories, the 3 oldest tagged; with a window of 10 each page looks at 10 memories at most,
    the first pages are empty but carry a cursor, and following the cursors finds the 3 and then stops."""
    services = lexical_services
    await services.identities.add("alice")
    await _fill(services, 60, 3)
    alice, rare = agent_named("alice"), MemoryFilter(tags=["rare"])
    whole = await services.memories.list(alice, cubes=["@alice"], where=rare, limit=25)
    assert len(whole.memories) == 3 and whole.next_cursor is None

    found, cursor, pages = [], None, 0
    while True:
        page = await services.memories.list(
            alice, cubes=["@alice"], where=rare, limit=25, cursor=cursor, scan_limit=10
        )
        pages += 1
        found += [m.id for m in page.memories]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(found) == sorted(m.id for m in whole.memories)
    assert pages == 6  # 60 memories, 10 looked at per page
    first = await services.memories.list(alice, cubes=["@alice"], where=rare, limit=25, scan_limit=10)
    assert first.memories == [] and first.next_cursor is not None


async def test_the_timeline_counts_a_readable_cubes_memories_per_day_and_hides_others(
    lexical_services: Services,
) -> None:
    services = lexical_services
    await services.identities.add("alice")
    await services.identities.add("bob")
    await _fill(services, 7, 0)
    days = await services.activity.timeline(agent_named("alice"), "@alice")
    assert sum(d.count for d in days) == 7 and len(days) == 1
    await _fill(services, 5, 0, "borealis")  # counted on top of what the first call counted
    await services.memories.delete(
        agent_named("alice"), (await services.memories.list(agent_named("alice"))).memories[0].id
    )
    days = await services.activity.timeline(agent_named("alice"), "@alice")
    assert sum(d.count for d in days) == 12  # recorded, deleted ones included
    with pytest.raises(NotFound, match="does not exist or you have no access"):
        await services.activity.timeline(agent_named("bob"), "@alice")
