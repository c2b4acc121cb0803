"""A search's reads run whole on a SQLite reader's own thread (daemon/reader_threads.py): its statements and its
blocking steps in place there, handed over by the event loop once and waited for to their end; on PostgreSQL
they run on the event loop, on a reader lent for them, as before."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from daemon import NewMemory, NotFound, SearchQuery, Services, agent_named
from daemon.audit import AuditEntry
from daemon.errors import MemosError, StoreClosed
from daemon.reader_threads import blocking, on_reader_thread
from daemon.store import Connection, Store
from tests.conftest import BOTH

pytestmark = pytest.mark.anyio
BACKENDS = BOTH


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "memos.db", read_connections=2)
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_long_read_runs_whole_on_a_readers_thread_its_statements_and_blocking_steps_in_place(
    store: Store,
) -> None:
    loop_thread = threading.get_ident()
    seen: dict[str, object] = {}

    async def reads(conn: Connection) -> int:
        seen["thread"], seen["on reader"] = threading.get_ident(), on_reader_thread()
        seen["blocking step"] = await blocking(threading.get_ident)
        return int(await conn.value("SELECT count(*) FROM memories"))

    assert await store.long_read(reads) == 0
    assert seen["on reader"] is True
    assert seen["thread"] != loop_thread
    assert seen["blocking step"] == seen["thread"]
    assert not on_reader_thread()  # the daemon's loop is not a reader's thread
    assert await blocking(threading.get_ident) != loop_thread  # there a blocking step goes to a worker


async def test_long_reads_beyond_the_readers_wait_on_their_threads_and_each_gets_its_own_answer(
    store: Store,
) -> None:
    """Steps: eight long reads at once on two readers, each reading a value of its own and holding its
    reader a moment; every one answers with its own value, and never more than two run at once."""
    running, most, lock = 0, 0, threading.Lock()

    async def reads(number: int, conn: Connection) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        value = await conn.value("SELECT ? * 10", (number,))
        await anyio.sleep(0.01)
        with lock:
            running -= 1
        return int(value)

    answers: dict[int, int] = {}

    async def ask(number: int) -> None:
        answers[number] = await store.long_read(lambda conn: reads(number, conn))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for number in range(8):
                tg.start_soon(ask, number)
    assert answers == {number: number * 10 for number in range(8)}
    assert most == 2
    assert store.search_slots == 4  # two per reader: one at work, one waiting on its thread


async def test_an_error_in_a_long_read_reaches_its_caller_and_the_reader_serves_on(store: Store) -> None:
    async def bad_sql(conn: Connection) -> object:
        return await conn.value("SELECT missing FROM no_such_table")

    async def refused(conn: Connection) -> object:
        raise NotFound("cube 'elsewhere' was not found")

    with pytest.raises(MemosError) as raised:
        await store.long_read(bad_sql)
    assert "no_such_table" in str(raised.value)
    with pytest.raises(NotFound, match="elsewhere"):
        await store.long_read(refused)
    assert await at_once(store, 4, lambda conn: conn.value("SELECT 7")) == [7] * 4  # each reader, twice


async def at_once(store: Store, count: int, work: Callable[[Connection], Awaitable[object]]) -> list[object]:
    """`count` long reads of `work` started at once (so that each reader takes its share)."""
    answers: list[object] = []

    async def read() -> None:
        answers.append(await store.long_read(work))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(read)
    return answers


async def test_a_search_s_reads_cannot_read_write_or_long_read_anew(store: Store) -> None:
    """The store's pools, write lock and counts belong to the event loop: from a reader's thread they refuse."""

    async def nested(conn: Connection) -> None:
        async with store.read():
            pass

    async def writes(conn: Connection) -> None:
        async with store.write():
            pass

    async def long_reads(conn: Connection) -> None:
        await store.long_read(lambda again: again.value("SELECT 1"))

    for work in (nested, writes, long_reads):
        with pytest.raises(RuntimeError, match="reader's thread"):
            await store.long_read(work)
    assert await at_once(store, 4, lambda conn: conn.value("SELECT 2")) == [2] * 4


async def test_closing_the_store_lets_the_long_reads_under_way_end_then_refuses_more(store: Store) -> None:
    """Steps: four long reads hold both readers (two at work, two waiting behind them); the store is closed
    meanwhile; once they are released each ends with its answer, the close completes, and a new long read
    is refused as the store being closed."""
    release, started = threading.Event(), threading.Event()

    async def holds(conn: Connection) -> object:
        started.set()
        while not release.is_set():  # noqa: ASYNC110 - set from the test's loop, another thread's
            await anyio.sleep(0.005)
        return await conn.value("SELECT 3")

    answers: list[object] = []

    async def read() -> None:
        answers.append(await store.long_read(holds))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(read)
            await anyio.to_thread.run_sync(started.wait)
            tg.start_soon(store.close)
            await anyio.sleep(0.1)
            assert answers == []
            release.set()
    assert answers == [3] * 4
    with pytest.raises(StoreClosed):
        await store.long_read(holds)


async def test_a_cancelled_long_read_gives_up_only_once_its_reads_have_ended(store: Store) -> None:
    """Steps: a long read holds its reader's thread until released; its caller is cancelled; the caller is
    still waiting (its reads cannot be stopped mid-way); once released, the caller ends cancelled, its result
    unused, and the readers serve the next reads."""
    release, started, ended = threading.Event(), threading.Event(), anyio.Event()

    async def holds(conn: Connection) -> int:
        started.set()
        while not release.is_set():  # noqa: ASYNC110 - set from the test's loop, another thread's
            await anyio.sleep(0.005)
        return 1

    async def caller(scope: anyio.CancelScope) -> None:
        with scope:
            await store.long_read(holds)
            pytest.fail("a cancelled long read returned its result")
        ended.set()

    scope = anyio.CancelScope()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, scope)
            await anyio.to_thread.run_sync(started.wait)
            scope.cancel()
            await anyio.sleep(0.1)
            assert not ended.is_set()
            release.set()
            await ended.wait()
    assert await at_once(store, 4, lambda conn: conn.value("SELECT 1")) == [1] * 4


async def test_a_search_refused_a_named_cube_is_audited_from_its_readers_thread(
    lexical_services: Services,
) -> None:
    """Steps: B keeps a memory in its own cube; A searches B's cube by name: refused as not found, and the
    refusal (checked in the search's reads, on a reader's thread on SQLite) is in the audit log."""
    services = lexical_services
    await services.identities.add("alice")
    await services.identities.add("bob")
    bob = agent_named("bob")
    await services.additions.add(bob, None, NewMemory(content="Bob keeps the billing notes"))
    with pytest.raises(NotFound):
        await services.search.search(
            agent_named("alice"), SearchQuery(query="billing", cubes=[bob.home_cube])
        )

    async def denials() -> list[AuditEntry]:
        return [entry for entry in await services.audit.entries(agent="alice") if entry.outcome == "denied"]

    with anyio.fail_after(10):
        while not await denials():  # noqa: ASYNC110 - the audit loop writes its queue in batches, in its time
            await anyio.sleep(0.02)
    (denial,) = await denials()
    assert (denial.action, denial.cube) == ("read", bob.home_cube)


async def test_many_searches_at_once_answer_as_one_alone_does(services: Services) -> None:
    """The same question asked many times at once (three times the search slots, so that searches wait on the
    readers' threads on SQLite, for a lent reader on PostgreSQL) and alone: the same hits each time."""
    await services.identities.add("asker")
    asker = agent_named("asker")
    topics = ["billing service", "search database", "mobile release", "deployment pipeline"]
    await services.additions.add_batch(
        asker, None, [NewMemory(content=f"Note {i}: Lena on the {topics[i % 4]}") for i in range(40)]
    )
    query = SearchQuery(query="What did Lena say about the billing service?", k=5)
    alone = [(hit.id, hit.score) for hit in (await services.search.search(asker, query)).results]
    together: list[list[tuple[str, float]]] = []

    async def ask() -> None:
        together.append([(hit.id, hit.score) for hit in (await services.search.search(asker, query)).results])

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(3 * services.search.gate.slots):
                tg.start_soon(ask)
    assert len(alone) == 5 and len(together) == 3 * services.search.gate.slots
    for answer in together:
        assert [id_ for id_, _ in answer] == [id_ for id_, _ in alone]
        assert [score for _, score in answer] == pytest.approx([score for _, score in alone], abs=1e-5)
