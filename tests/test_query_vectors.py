"""Searches that wait for their turn have their query vectors made together, in one model call, and answer
as they do alone."""

from __future__ import annotations

import threading

import anyio
import anyio.lowlevel
import pytest

from daemon import NewMemory, SearchQuery, Services, agent_named
from tests.conftest import hold_every_search_slot

pytestmark = pytest.mark.anyio

QUESTIONS = [
    "What did Lena decide about the billing service?",
    "Which database does the search team run?",
    "When is the mobile release?",
    "Who owns the deployment pipeline?",
    "Why did the cache fail last week?",
    "billing invoices",
]


async def test_searches_waiting_for_their_turn_share_one_model_call_and_answer_as_alone(
    services: Services,
) -> None:
    """Steps: memories on several topics; each question asked alone (the reference); every search slot held
    as running searches hold it; the six questions asked at once, all waiting for their turn; the slots
    freed; their query vectors were made in one model call, and each answer is the one it got alone."""
    asker = agent_named("asker")
    await services.identities.add("asker")
    topics = ["billing service", "search database", "mobile release", "deployment pipeline", "cache"]
    await services.additions.add_batch(
        asker,
        None,
        [NewMemory(content=f"Note {i}: Lena on the {topics[i % 5]}, item {i}") for i in range(40)],
    )
    search = services.search

    async def answer(question: str) -> list[tuple[str, float]]:
        results = await search.search(asker, SearchQuery(query=question, k=5))
        assert results.mode == "hybrid"
        return [(hit.id, hit.score) for hit in results.results]

    alone = [await answer(question) for question in QUESTIONS]
    together: dict[int, list[tuple[str, float]]] = {}
    release = threading.Event()

    async def ask(index: int) -> None:
        together[index] = await answer(QUESTIONS[index])

    calls = search.query_vectors.calls
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await hold_every_search_slot(tg, services, [release] * search.gate.slots)
            for index in range(len(QUESTIONS)):
                tg.start_soon(ask, index)
            await anyio.wait_all_tasks_blocked()
            assert search.gate.waiting() == len(QUESTIONS)
            release.set()
    assert search.query_vectors.calls == calls + 1
    for index, reference in enumerate(alone):
        assert [id_ for id_, _ in together[index]] == [id_ for id_, _ in reference]
        assert [score for _, score in together[index]] == pytest.approx([s for _, s in reference], abs=1e-5)


async def test_a_search_cancelled_while_waiting_leaves_no_query_behind(services: Services) -> None:
    """Steps: every slot held; a search waits for its turn and is cancelled: neither its turn nor its query
    is left waiting; the next search is answered with its vectors."""
    asker = agent_named("asker")
    await services.identities.add("asker")
    await services.additions.add(asker, None, NewMemory(content="Lena moved the billing service to Go"))
    search = services.search
    release = threading.Event()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await hold_every_search_slot(tg, services, [release] * search.gate.slots)
            with anyio.move_on_after(0.2):
                await search.search(asker, SearchQuery(query="billing service", k=5))
            assert (search.gate.waiting(), search.query_vectors.waiting) == (0, 0)
            release.set()
    assert search.query_vectors.waiting == 0
    results = await search.search(asker, SearchQuery(query="Who moved the billing service?", k=5))
    assert [hit.content for hit in results.results] == ["Lena moved the billing service to Go"]


async def test_cancelling_the_search_that_embeds_others_queries_leaves_them_answered(
    services: Services,
) -> None:
    """Steps: every slot held; agents a, b and c each ask once and wait; one slot frees and a's search, whose
    turn comes first, takes all three queries into its model call; a's search is cancelled during that
    call; b's and c's searches are still answered, with their vectors, and no query is left waiting."""
    for name in ("a", "b", "c"):
        await services.identities.add(name)
        await services.additions.add(
            agent_named(name), None, NewMemory(content=f"{name} moved the billing service to Go")
        )
    search, vectors = services.search, services.search.query_vectors
    holders = [threading.Event() for _ in range(search.gate.slots)]
    answers: dict[str, list[str]] = {}

    async def ask(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            results = await search.search(agent_named(name), SearchQuery(query="billing service", k=5))
            assert results.mode == "hybrid"
            answers[name] = [hit.content for hit in results.results]

    first = anyio.CancelScope()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await hold_every_search_slot(tg, services, holders)
            for name in ("a", "b", "c"):
                tg.start_soon(ask, name, first if name == "a" else anyio.CancelScope())
                await anyio.wait_all_tasks_blocked()
            assert vectors.waiting == 3
            holders[0].set()
            while vectors.waiting:  # a's turn came: its call has taken every waiting query
                await anyio.lowlevel.checkpoint()
            first.cancel()
            for release in holders[1:]:
                release.set()
    assert answers == {
        "b": ["b moved the billing service to Go"],
        "c": ["c moved the billing service to Go"],
    }
    assert vectors.waiting == 0
