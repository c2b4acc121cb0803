"""Memories through the service API: add, batch, get, update with history, soft delete, list, limits."""

from __future__ import annotations

import pytest

from daemon import (
    AddedMemory,
    Conflict,
    InvalidInput,
    MemoryChanges,
    MemoryFilter,
    NewMemory,
    NotFound,
    Services,
    agent_named,
)
from tests.conftest import BOTH

pytestmark = pytest.mark.anyio
BACKENDS = BOTH


async def _agent(services: Services, name: str = "alice"):  # type: ignore[no-untyped-def]
    await services.identities.add(name)
    return agent_named(name)


async def test_a_memory_goes_to_the_agents_private_cube_by_default(services: Services) -> None:
    alice = await _agent(services)
    memory = await services.additions.add(
        alice, None, NewMemory(content="Prefers dark mode", kind="preference")
    )
    assert memory.cube == "@alice"
    assert memory.source_agent == "alice"
    assert (await services.memories.get(alice, memory.id)).content == memory.content


async def test_an_update_keeps_the_previous_version_in_history(services: Services) -> None:
    alice = await _agent(services)
    first = await services.additions.add(alice, None, NewMemory(content="Deploys happen on Tuesdays"))
    updated = await services.memories.update(
        alice, first.id, MemoryChanges(content="Deploys happen on Thursdays")
    )
    assert updated.version == 2
    history = await services.memories.history(alice, first.id)
    assert [(v.version, v.content, v.current) for v in history] == [
        (1, "Deploys happen on Tuesdays", False),
        (2, "Deploys happen on Thursdays", True),
    ]
    assert history[0].replaced_by == "alice"


async def test_an_update_with_a_stale_expected_version_changes_nothing(services: Services) -> None:
    alice = await _agent(services)
    memory = await services.additions.add(alice, None, NewMemory(content="v1"))
    await services.memories.update(alice, memory.id, MemoryChanges(content="v2"))
    with pytest.raises(Conflict, match="version 2, not 1"):
        await services.memories.update(alice, memory.id, MemoryChanges(content="v3"), expected_version=1)
    assert (await services.memories.get(alice, memory.id)).content == "v2"


async def test_a_batch_with_one_bad_item_stores_nothing_and_names_the_item(services: Services) -> None:
    alice = await _agent(services)
    items = [NewMemory(content="fine"), NewMemory(content="also fine"), NewMemory(content="   ")]
    with pytest.raises(InvalidInput, match=r"items\[2\]\.content is empty"):
        await services.additions.add_batch(alice, None, items)
    assert (await services.memories.list(alice)).memories == []


async def test_a_batch_is_stored_whole(services: Services) -> None:
    alice = await _agent(services)
    added = await services.additions.add_batch(
        alice, None, [NewMemory(content=f"fact {i}") for i in range(30)]
    )
    page = await services.memories.list(alice, limit=500)
    assert sorted(m.id for m in page.memories) == sorted(added.ids)


async def test_deleted_memories_leave_lists_and_come_back_on_restore(services: Services) -> None:
    alice = await _agent(services)
    memory = await services.additions.add(alice, None, NewMemory(content="temporary"))
    deleted = await services.memories.delete(alice, memory.id)
    assert deleted.deleted_at is not None
    assert (await services.memories.list(alice)).memories == []
    listed = await services.memories.list(alice, where=MemoryFilter(include_deleted=True))
    assert [m.id for m in listed.memories] == [memory.id]
    await services.memories.restore(alice, memory.id)
    assert [m.id for m in (await services.memories.list(alice)).memories] == [memory.id]


async def test_listing_pages_through_everything_newest_first(services: Services) -> None:
    alice = await _agent(services)
    added = await services.additions.add_batch(
        alice, None, [NewMemory(content=f"note {i}") for i in range(7)]
    )
    seen, cursor = [], None
    while True:
        page = await services.memories.list(alice, limit=3, cursor=cursor)
        seen += [m.id for m in page.memories]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(added.ids))


async def test_another_agents_memory_is_not_found_rather_than_forbidden(services: Services) -> None:
    alice, bob = await _agent(services, "alice"), await _agent(services, "bob")
    secret = await services.additions.add(alice, None, NewMemory(content="alice's secret"))
    for call in (
        services.memories.get(bob, secret.id),
        services.memories.update(bob, secret.id, MemoryChanges(content="hijack")),
        services.memories.delete(bob, secret.id),
        services.memories.history(bob, secret.id),
    ):
        with pytest.raises(NotFound, match="no memory with id"):
            await call
    with pytest.raises(NotFound, match="does not exist or you have no access"):
        await services.additions.add(bob, "@alice", NewMemory(content="intrusion"))
    assert (await services.memories.get(alice, secret.id)).content == "alice's secret"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (NewMemory(content=""), "content is empty"),
        (NewMemory(content="x" * 70_000), "content is 70000 bytes; the limit is 65536 bytes"),
        (NewMemory(content="a\x00b"), "content contains a NUL character"),
        (NewMemory(content="ok", metadata={"note": "a\x00b"}), "metadata contains a NUL character"),
        (NewMemory(content="\ud800 lone surrogate"), "content is not valid UTF-8"),
        (NewMemory(content="ok", importance=2.0), "importance must be a number from 0 to 1"),
        (NewMemory(content="ok", occurred_at="yesterday"), "occurred_at: 'yesterday' is not an ISO-8601"),
        (NewMemory(content="ok", tags=["x" * 100]), "longer than 64 characters"),
        (NewMemory(content="ok", tags=[str(i) for i in range(40)]), "40 tags; the limit is 32"),
        (
            NewMemory(content="ok", metadata={"blob": "y" * 20_000}),
            "metadata is 20011 bytes as JSON; the limit is 16384",
        ),
    ],
)
async def test_bad_input_is_refused_with_a_message_naming_the_problem(
    services: Services, item: NewMemory, message: str
) -> None:
    alice = await _agent(services)
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        await services.additions.add(alice, None, item)
    assert (await services.memories.list(alice)).memories == []


async def test_a_batch_over_the_limit_is_refused(services: Services) -> None:
    alice = await _agent(services)
    items = [NewMemory(content="x")] * (services.config.limits.max_batch + 1)
    with pytest.raises(InvalidInput, match="the limit is 1000 per batch"):
        await services.additions.add_batch(alice, None, items)


async def test_a_batch_stores_each_text_once_and_in_its_order_also_when_a_text_repeats_within_it(
    services: Services,
) -> None:
    alice = await _agent(services)
    office = await services.additions.add(
        alice, None, NewMemory(content="The office is on floor 3", kind="fact")
    )
    added = await services.additions.add_batch(
        alice,
        None,
        [
            NewMemory(content="Lena owns the billing service", kind="fact"),
            NewMemory(content="The office is on floor 3", kind="fact"),  # a memory of the cube already
            NewMemory(content="  lena OWNS the billing   service ", kind="fact"),  # the first item again
            NewMemory(content="Lena owns the billing service", kind="note"),  # another kind: its own memory
            NewMemory(content="Thanks!", kind="message"),
            NewMemory(content="Thanks!", kind="message"),  # said twice: two turns
        ],
    )
    lena, existing, again, note, thanks, thanks_again = added.ids
    assert existing == office.id and again == lena
    assert len({office.id, lena, note, thanks, thanks_again}) == 5
    assert added.count == 6 and added.duplicates == [office.id, lena]
    listed = [m.id for m in (await services.memories.list(alice, limit=50)).memories]
    assert listed == [thanks_again, thanks, note, lena, office.id]  # newest first: the batch in its order


@pytest.mark.sqlite_only  # SQLite's statement trace
async def test_a_batch_is_checked_for_duplicates_and_inserted_many_rows_to_a_statement(
    services: Services,
) -> None:
    """The SQL a batch costs does not grow by a statement or two per memory: 300 memories are checked for
    duplicates in one query and inserted 64 to a statement."""
    alice = await _agent(services)
    statements: list[str] = []
    writer = services.store._writer  # the store's one writer connection
    await writer.set_trace_callback(statements.append)
    try:
        added = await services.additions.add_batch(
            alice, None, [NewMemory(content=f"fact number {i}", kind="fact") for i in range(300)]
        )
    finally:
        await writer.set_trace_callback(None)
    # The trace gives a statement's text (its values bound) again for each trigger program it runs.
    inserts = {s for s in statements if s.startswith("INSERT INTO memories ")}
    checks = {s for s in statements if s.startswith("SELECT") and "content_hash" in s}
    assert (len(inserts), len(checks)) == (5, 1)
    assert added.count == 300 and len(set(added.ids)) == 300


async def test_an_add_reports_similar_memories_as_the_cube_held_them_before_it(services: Services) -> None:
    """The similar-memory lookup runs beside the write, and reports the cube as it was before the add: a
    memory the add supersedes was current then and is reported, the new memory never is. With an
    idempotency key the recorded result (what a retry gets back) says the same."""
    alice = await _agent(services)
    paris = await services.additions.add(
        alice, None, NewMemory(content="Bob lives in Paris with his two cats and a dog", kind="fact")
    )
    moved = await services.additions.add(
        alice,
        None,
        NewMemory(content="Bob now lives in Paris with his two cats and a dog", kind="fact"),
        supersedes=[paris.id],
    )
    assert moved.superseded == [paris.id]
    assert [s.id for s in moved.similar] == [paris.id]

    item = NewMemory(content="Bob now lives in Paris with his two cats and his dog", kind="fact")

    def write(rec):  # type: ignore[no-untyped-def]
        return services.additions.add(alice, None, item, recorder=rec)

    first = await services.idempotent(alice, "k-1", "memory_add", ["same"], AddedMemory, write)
    assert [s.id for s in first.similar] == [moved.id]  # paris is superseded now: not current
    again = await services.idempotent(alice, "k-1", "memory_add", ["same"], AddedMemory, write)
    assert again.id == first.id and again.similar == first.similar


async def test_an_add_that_fails_raises_its_own_error_and_stores_nothing(services: Services) -> None:
    alice = await _agent(services)
    with pytest.raises(NotFound, match="mem_0000000000000000"):
        await services.additions.add(
            alice, None, NewMemory(content="Bob moved to Berlin"), supersedes=["mem_0000000000000000"]
        )
    assert (await services.memories.list(alice)).memories == []
