"""The entity index and what search does with it: entities found by rules on every write (and for rows from
before the index, in the background), shown by memory_get; the named-speaker rule between named people; the
entity and graph signals."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import pytest

from daemon import MemoryChanges, NewMemory, SearchQuery, Services, agent_named, open_services
from daemon.entities import extract
from daemon.entity_signals import entity_scores, graph_scores, rarity
from daemon.phrasings import guarantee, leaders
from daemon.speaker import named_speaker, speaker_signal
from daemon.transfer import ImportDefaults, import_lines
from tests.conftest import BOTH, RunningDaemon, make_config, mcp_client
from tests.test_mcp_http import call

pytestmark = pytest.mark.anyio
BACKENDS = BOTH


@pytest.mark.parametrize(
    ("text", "speaker", "expected"),
    [
        ("Yesterday we went to New York City with John Smith.", None, {"new york city", "john smith"}),
        ("Caroline painted a sunrise in Paris.", None, {"caroline", "paris"}),
        ("Hey Mel! Thanks, I loved it.", None, {"mel"}),
        ('We read "The Little Prince" on 8 May 2023; it cost $1,200.', None,
         {"the little prince", "8 may", "2023", "1200"}),
        ("I bought 3 apples on May 8th.", "Melanie", {"8 may", "melanie"}),
        ("What's up? Just chilling at home.", None, set()),
    ],
)  # fmt: skip
def test_entities_are_names_numbers_dates_titles_and_the_speaker(
    text: str, speaker: str | None, expected: set[str]
) -> None:
    assert extract(text, speaker) == expected


def test_a_question_naming_one_speaker_favours_that_persons_turns() -> None:
    speakers = ["Caroline", "Melanie", None, "Caroline"]
    assert named_speaker(["What did Caroline paint?"], speakers) == "caroline"
    assert named_speaker(["What do Caroline and Melanie both enjoy?"], speakers) is None
    assert named_speaker(["what did caroline paint?"], speakers) is None  # not written as a name
    assert named_speaker(["What did we paint?"], speakers) is None
    assert speaker_signal(None, None, "Melanie", "caroline") == 0.0
    assert speaker_signal(None, None, "Caroline", "caroline") == 1.0
    assert speaker_signal(None, None, None, "caroline") == 1.0  # a memory with no speaker is never held back
    # Without a named speaker, a turn of a named person with no role is held back by no one.
    assert speaker_signal(None, "user", "Melanie", None) == 1.0
    # "What did I tell Claude?": the role rule first, where the question and the turn have roles.
    assert named_speaker(["What did I tell Claude?"], ["Ada", "Claude"]) == "claude"
    assert speaker_signal("user", "user", "Ada", "claude") == 1.0
    assert speaker_signal("assistant", "user", "Claude", "claude") == 0.0


def test_the_entity_signal_weighs_rare_entities_more_and_the_graph_follows_seeds() -> None:
    frequency = {"paris": 2, "caroline": 200}
    scores = entity_scores(["paris", "caroline"], [(1, "paris"), (2, "caroline")], frequency)
    assert scores[1] > scores[2] > 0 and rarity(1) == 1.0
    reached = graph_scores({10: 0.9}, [(10, "paris")], [(10, "paris"), (11, "paris")], frequency, [(10, 12)])
    assert set(reached) == {11, 12} and max(reached.values()) == 1.0


@pytest.fixture
async def entity_services(tmp_path: Path, model_dir: Path) -> AsyncIterator[Services]:
    """The daemon core with the entity and graph signals on."""
    config = make_config(tmp_path, str(model_dir))
    blend = msgspec.structs.replace(config.search.blend, entity=4.0, graph=4.0)
    search = msgspec.structs.replace(config.search, blend=blend)
    async with open_services(msgspec.structs.replace(config, search=search)) as core:
        await core.vectors.attached.wait()
        yield core


async def test_every_write_indexes_its_entities_and_memory_get_shows_them(
    lexical_services: Services,
) -> None:
    s = lexical_services
    await s.identities.add("ada")
    ada = agent_named("ada")
    added = await s.additions.add(ada, None, NewMemory(content="Met Bob Jones in Paris in 2019"))
    batch = await s.additions.add_batch(
        ada,
        None,
        [NewMemory(content="hi", kind="message", metadata={"speaker": "Caroline", "session": "s1"})],
    )
    assert (await s.links.get(ada, added.id)).entities == ["2019", "bob jones", "paris"]
    assert (await s.links.get(ada, batch.ids[0])).entities == ["caroline"]
    await s.memories.update(ada, added.id, MemoryChanges(content="Met Bob Jones in Lisbon"))
    assert (await s.links.get(ada, added.id)).entities == ["bob jones", "lisbon"]


async def test_memories_from_before_the_index_are_indexed_in_the_background(tmp_path: Path) -> None:
    """Steps: write a memory; empty the index and mark it pending as migration 7 leaves an old database;
    reopen the daemon core; the background backfill indexes it."""
    config = make_config(tmp_path, "none")
    async with open_services(config) as core:
        await core.identities.add("ada")
        ada = agent_named("ada")
        memory_id = (await core.additions.add(ada, None, NewMemory(content="Dinner with Zoe in Rome"))).id
    with sqlite3.connect(config.database_path) as conn:
        conn.execute("DELETE FROM memory_entities")
        conn.execute("INSERT INTO entity_pending (seq) SELECT seq FROM memories")
    async with open_services(config) as core:
        with anyio.fail_after(10):
            await core.entities.idle.wait()
        assert (await core.links.get(agent_named("ada"), memory_id)).entities == ["rome", "zoe"]


async def test_the_graph_brings_a_memory_that_shares_a_rare_entity_with_the_best_hit(
    entity_services: Services,
) -> None:
    """ "Where did the person Bob met in Paris move to?": the best hit names Zoe; the answer, about Zoe, shares
    no words with the question."""
    s = entity_services
    await s.identities.add("ada")
    ada = agent_named("ada")
    notes = [
        "Bob met Zoe Harrington in Paris at a bakery.",
        "Zoe Harrington moved to Lisbon last spring.",
        *(f"Unrelated note number {n} about gardening tomatoes" for n in range(20)),
    ]
    await s.additions.add_batch(ada, None, [NewMemory(content=text) for text in notes])
    result = await s.search.search(
        ada, SearchQuery(query="Where did the person Bob met in Paris move to?", k=5)
    )
    moved = next(hit for hit in result.results if "Lisbon" in hit.content)
    assert moved.match.signals["graph"] > 0


def test_each_phrasings_best_match_keeps_a_place_in_the_top_k() -> None:
    fused = [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.3), (5, 0.2)]
    assert guarantee(fused, [5], 3) == [(1, 0.9), (2, 0.8), (5, 0.2), (3, 0.7), (4, 0.3)]
    assert guarantee(fused, [2], 3) == fused  # already there
    lexical = [{1: 1.0, 2: 0.9}, {5: 1.0}]
    assert leaders(lexical, [{}, {}], {"lexical": 1.0, "vector": 1.0}, {1, 2, 5}) == [1, 5]


async def test_a_second_phrasing_finds_its_own_answer_among_the_results(services: Services) -> None:
    """A model splits "where did the person Bob met in Paris move to?" in two; the answer to the second part
    shares no word with the first, and the first part matches many memories better."""
    await services.identities.add("ada")
    ada = agent_named("ada")
    notes = [
        *(f"Bob met a baker in Paris on trip number {n}" for n in range(8)),
        "Zoe Harrington moved to Lisbon last spring.",
    ]
    await services.additions.add_batch(ada, None, [NewMemory(content=text) for text in notes])
    query = SearchQuery(query="the person Bob met in Paris", queries=["where did Zoe move to"], k=3)
    result = await services.search.search(ada, query)
    assert any("Lisbon" in hit.content for hit in result.results)


async def test_an_imported_memory_is_indexed_by_the_import(lexical_services: Services) -> None:
    s = lexical_services
    await s.identities.add("ada")
    line = json.dumps({"content": "Lunch with Priya Raman in Madrid"})
    report = await import_lines(
        s.store, [line], ImportDefaults(agent="ada", cube="@ada", kind="note"), s.config.limits
    )
    assert not report.errors
    async with s.store.read() as conn:
        rows = await conn.rows("SELECT entity FROM memory_entities ORDER BY entity")
        pending = await conn.rows("SELECT seq FROM entity_pending")
    assert [row["entity"] for row in rows] == ["madrid", "priya raman"] and not pending


async def test_memory_get_over_mcp_lists_the_memorys_entities(daemon: RunningDaemon) -> None:
    token = daemon.add_agent("eve")
    async with mcp_client(daemon.url, token) as client:
        added = await call(client, "memory_add", content="Eve flew to Tokyo with Ravi Shah in 2024")
        got = await call(client, "memory_get", id=added["id"])
    assert got["entities"] == ["2024", "ravi shah", "tokyo"]
