"""Hybrid search: meaning and words fused, scoped to readable cubes, user text never FTS5 syntax."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import InvalidInput, NewMemory, SearchQuery, Services, agent_named, open_services
from daemon.filters import MemoryFilter
from daemon.lexical import fts_query
from daemon.sqlite_driver import connect
from tests.conftest import BOTH, make_config

pytestmark = pytest.mark.anyio
BACKENDS = BOTH

FACTS = [
    NewMemory(content="Alice drinks green tea every morning", kind="preference", tags=["alice"]),
    NewMemory(content="The staging cluster runs Kubernetes 1.31", kind="fact", tags=["infra"]),
    NewMemory(content="Quarterly planning meeting moved to Thursday", kind="event", tags=["calendar"]),
    NewMemory(content="To release: tag the commit, then run the publish workflow", kind="procedure"),
]


async def _alice_with_facts(services: Services):  # type: ignore[no-untyped-def]
    await services.identities.add("alice")
    alice = agent_named("alice")
    await services.additions.add_batch(alice, None, FACTS)
    return alice


async def test_a_semantic_hit_needs_no_shared_words(services: Services) -> None:
    alice = await _alice_with_facts(services)
    result = await services.search.search(alice, SearchQuery(query="which hot beverage is preferred", k=3))
    assert result.mode == "hybrid"
    assert result.results[0].content == "Alice drinks green tea every morning"
    assert result.results[0].match.lexical_rank is None
    assert result.results[0].match.vector_rank == 1


async def test_the_issue_example_ranks_the_tea_memory_first(services: Services) -> None:
    alice = await _alice_with_facts(services)
    result = await services.search.search(alice, SearchQuery(query="what beverage does Alice like"))
    assert result.results[0].content.startswith("Alice drinks green tea")
    assert result.cubes == ["@alice"]


async def test_the_model_reads_256_tokens_of_a_long_text_as_sentence_transformers_does(
    services: Services,
) -> None:
    words = [
        "the",
        "river",
        "runs",
        "past",
        "old",
        "mills",
        "and",
        "quiet",
        "farms",
        "toward",
        "a",
        "distant",
        "grey",
        "sea",
    ]
    opening = " ".join(words[i % len(words)] for i in range(300))
    assert 256 < services.embedder.count_tokens(opening) < 400  # past the window, within fastembed's 512
    vectors = await services.embedder.embed([opening, opening + " and then a different ending entirely"])
    assert float(vectors[0] @ vectors[1]) > 0.9999


async def test_exact_words_rank_first_in_lexical_mode(services: Services) -> None:
    alice = await _alice_with_facts(services)
    result = await services.search.search(alice, SearchQuery(query="Kubernetes", mode="lexical"))
    assert result.mode == "lexical"
    assert [hit.content for hit in result.results] == ["The staging cluster runs Kubernetes 1.31"]


async def test_filters_narrow_results(services: Services) -> None:
    alice = await _alice_with_facts(services)
    result = await services.search.search(alice, SearchQuery(query="meeting tea cluster", kinds=["event"]))
    assert [hit.kind for hit in result.results] == ["event"]
    result = await services.search.search(alice, SearchQuery(query="meeting tea cluster", tags=["infra"]))
    assert [hit.tags for hit in result.results] == [["infra"]]
    result = await services.search.search(alice, SearchQuery(query="tea", until="2000-01-01"))
    assert result.results == []


async def test_the_nearest_by_meaning_pass_every_filter_as_the_words_do(services: Services) -> None:
    """Steps: alice keeps notes about tea of several kinds, tags and times; one is superseded, one deleted,
    one expired. The nearest vectors are found over whole cubes, so searching by meaning alone (and hybrid)
    must still leave out what each filter excludes: kinds, tags, since/until, as_of, and always the deleted,
    the expired and (unless asked for) the superseded."""
    await services.identities.add("alice")
    alice = agent_named("alice")
    add = services.additions.add
    black = NewMemory(
        content="Alice drinks black tea with milk",
        kind="preference",
        tags=["drinks"],
        occurred_at="2024-01-10T08:00:00Z",
    )
    old = await add(alice, None, black)
    green = NewMemory(
        content="Alice drinks green tea every morning",
        kind="preference",
        tags=["drinks"],
        occurred_at="2025-06-01T08:00:00Z",
    )
    await add(alice, None, green, supersedes=[old.id])
    oolong = NewMemory(
        content="Alice brewed oolong tea at the offsite",
        kind="event",
        tags=["offsite"],
        occurred_at="2025-03-01T08:00:00Z",
    )
    await add(alice, None, oolong)
    gone = await add(alice, None, NewMemory(content="Alice bought a jasmine tea sampler", kind="event"))
    await services.memories.delete(alice, gone.id)
    expired = NewMemory(
        content="Alice tried a cup of chai tea", kind="note", expires_at="2001-01-01T00:00:00Z"
    )
    await add(alice, None, expired)

    async def found(**filters: object) -> set[str]:
        contents = set()
        for mode in ("vector", "hybrid"):
            query = msgspec.convert(
                {"query": "what tea does Alice drink", "mode": mode, **filters}, SearchQuery
            )
            contents |= {hit.content for hit in (await services.search.search(alice, query)).results}
        return contents

    assert await found() == {green.content, oolong.content}
    assert await found(include_superseded=True) == {black.content, green.content, oolong.content}
    assert await found(kinds=["event"]) == {oolong.content}
    assert await found(tags=["drinks"]) == {green.content}
    assert await found(since="2025-05-01T00:00:00Z") == {green.content}
    assert await found(until="2025-04-01T00:00:00Z") == {oolong.content}
    assert await found(as_of="2024-06-01T00:00:00Z") == {black.content}


async def test_the_candidates_that_pass_are_found_when_most_of_the_best_matches_do_not(
    services: Services,
) -> None:
    """Steps: alice writes 300 notes about a zeppelin and deletes all but every 7th; a search's lexical and
    nearest candidates are filtered a chunk at a time, best first, until enough pass: every kept note that
    matches is still a lexical candidate, the nearest ones are all kept notes, and no deleted note is found."""
    await services.identities.add("alice")
    alice = agent_named("alice")
    notes = [
        NewMemory(content=f"The zeppelin {'flew ' * (i % 5)}over harbour number {i}") for i in range(300)
    ]
    ids = (await services.additions.add_batch(alice, None, notes)).ids
    for index, memory_id in enumerate(ids):
        if index % 7:
            await services.memories.delete(alice, memory_id)
    async with services.store.read() as conn:
        seq_of = {row["id"]: row["seq"] for row in await conn.rows("SELECT id, seq FROM memories")}
    kept = {seq_of[memory_id] for index, memory_id in enumerate(ids) if index % 7 == 0}

    if services.search.lexical_index is not None:  # the in-memory BM25, as searches use it once filled
        await services.search.lexical_index.wait_ready()
    query = SearchQuery(query="zeppelin over the harbour", k=10)
    found = await services.search.candidates(alice, query)
    (lexical,) = found.lists["lexical"]
    (nearest,) = found.lists["vector"]
    assert set(lexical) == kept
    assert nearest and set(nearest) <= kept
    hits = (await services.search.search(alice, query)).results
    assert len(hits) == 10 and {seq_of[hit.id] for hit in hits} <= kept


@pytest.mark.parametrize("cache", ["int8", "float32", "none"])
async def test_a_nearest_memory_that_fails_the_filters_gives_its_place_to_the_next_that_passes(
    tmp_path: Path, model_dir: Path, backend: str | None, cache: str
) -> None:
    """Steps: alice writes ten notes about tea, of three kinds; of the query's nearest, the best is deleted,
    the second superseded (by a note about a fence) and the third of a kind the filter leaves out. Of the
    2 * 3 nearest (exact), the first 3 that pass are the search's nearest: those left out give their places
    to the next that pass, in order, with the int8 cache (whose re-score reads the filter with the vectors),
    the float32 cache and none, on either store."""
    config = make_config(tmp_path, str(model_dir), url=backend)
    search = msgspec.structs.replace(
        config.search,
        vector_cache=cache != "none",
        vector_precision="float32" if cache == "float32" else "int8",
    )
    async with open_services(msgspec.structs.replace(config, search=search)) as services:
        await services.vectors.attached.wait()
        await services.identities.add("alice")
        alice = agent_named("alice")
        teas = [
            "green",
            "black",
            "oolong",
            "jasmine",
            "chai",
            "mint",
            "earl grey",
            "white",
            "rooibos",
            "matcha",
        ]
        kinds = ["preference", "fact", "event"]
        notes = {
            f"Alice drinks {tea} tea in the morning": kinds[i % len(kinds)] for i, tea in enumerate(teas)
        }
        ids = (
            await services.additions.add_batch(
                alice, None, [NewMemory(content=text, kind=kind) for text, kind in notes.items()]
            )
        ).ids
        kind_of = dict(zip(ids, notes.values(), strict=True))
        query = (await services.embedder.embed(["which tea does Alice drink in the morning"]))[0]
        vectors = await services.embedder.embed(list(notes))
        similarity = {
            memory_id: float(vector @ query) for memory_id, vector in zip(ids, vectors, strict=True)
        }
        best = sorted(ids, key=lambda memory_id: -similarity[memory_id])
        await services.memories.delete(alice, best[0])
        fence = NewMemory(content="Bob repaints the garden fence", kind="fact")
        fence_id = (await services.additions.add(alice, None, fence, supersedes=[best[1]])).id
        similarity[fence_id] = float((await services.embedder.embed([fence.content]))[0] @ query)
        kind_of[fence_id] = fence.kind
        where = MemoryFilter(kinds=[kind for kind in kinds if kind != kind_of[best[2]]])
        async with services.store.read() as conn:
            seq_of = {row["id"]: row["seq"] for row in await conn.rows("SELECT id, seq FROM memories")}
            cube = await conn.value("SELECT cube_id FROM memories WHERE id = ?", (ids[0],))
            found = await services.vectors.nearest_passing(conn, query, [cube], 6, where.sql(), 3)
    nearest = sorted(similarity, key=lambda memory_id: -similarity[memory_id])[:6]
    passing = [
        memory_id
        for memory_id in nearest
        if memory_id not in best[:2] and kind_of[memory_id] in (where.kinds or [])
    ][:3]
    assert found, "at least one of the 6 nearest passes"
    assert [seq for seq, _ in found] == [seq_of[memory_id] for memory_id in passing]
    assert [value for _, value in found] == pytest.approx([similarity[m] for m in passing], abs=1e-5)


async def test_the_nearest_that_pass_are_exact_whether_or_not_the_nearest_few_all_pass(
    services: Services,
) -> None:
    """Steps: alice writes 240 notes, facts and preferences in turn; their stored vectors are replaced by near
    copies of one vector, so that the int8 shortlist for the nearest 40 is longer than the one for the
    nearest 20. The 20 nearest with no filter (they all pass: only their own shortlist is re-scored) and the
    20 nearest facts (half of the nearest fail: the whole shortlist is) are the exact ones, by the stored
    vectors."""
    await services.identities.add("alice")
    alice = agent_named("alice")
    kinds = ["fact", "preference"]
    notes = [NewMemory(content=f"note {i} about topic {i % 7}", kind=kinds[i % 2]) for i in range(240)]
    ids = (await services.additions.add_batch(alice, None, notes)).ids
    rng = np.random.default_rng(3)
    centre = rng.standard_normal(384).astype(np.float32)
    async with services.store.read() as conn:
        rows = await conn.rows(
            f"SELECT seq, cube_id, kind FROM memories WHERE id IN ({','.join('?' * len(ids))})", ids
        )
    vectors = {
        row["seq"]: centre / np.linalg.norm(centre) + rng.normal(0, 0.05, 384).astype(np.float32)
        for row in rows
    }
    vectors = {seq: (v / np.linalg.norm(v)).astype(np.float32) for seq, v in vectors.items()}
    cube = rows[0]["cube_id"]
    async with services.store.write() as conn:
        await services.vectors.put(conn, [(seq, cube, v) for seq, v in vectors.items()], mark=False)
    query = rng.standard_normal(384).astype(np.float32)
    query /= np.linalg.norm(query)
    exact = sorted(vectors, key=lambda seq: (-float(vectors[seq] @ query), seq))
    kind_of = {row["seq"]: row["kind"] for row in rows}
    async with services.store.read() as conn:
        every = await services.vectors.nearest_passing(conn, query, [cube], 40, MemoryFilter().sql(), 20)
        facts = await services.vectors.nearest_passing(
            conn, query, [cube], 40, MemoryFilter(kinds=["fact"]).sql(), 20
        )
    assert [seq for seq, _ in every] == exact[:20]
    assert [seq for seq, _ in facts] == [seq for seq in exact[:40] if kind_of[seq] == "fact"][:20]
    assert [value for _, value in every] == pytest.approx(
        [float(vectors[seq] @ query) for seq in exact[:20]], abs=1e-5
    )


async def test_a_stored_vector_without_a_memory_the_reader_sees_never_passes(services: Services) -> None:
    """Steps: alice writes four notes; a vector is stored for a seq no memory has (as a row of another
    writer's transaction not yet visible would be), nearest of all to the query. The KNN finds it first; the
    nearest that pass the filters leave it out, and alice's notes keep their order."""
    alice = await _alice_with_facts(services)
    asked = "which hot beverage does Alice prefer"
    query = (await services.embedder.embed([asked]))[0]
    async with services.store.read() as conn:
        cube = await conn.value("SELECT cube_id FROM memories LIMIT 1")
    async with services.store.write() as conn:
        await services.vectors.put(conn, [(10**9, cube, query)], mark=False)
    where = MemoryFilter().sql()
    async with services.store.read() as conn:
        nearest = await services.vectors.nearest(conn, query, [cube], 4)
        passing = await services.vectors.nearest_passing(conn, query, [cube], 4, where, 4)
        only_nearest = await services.vectors.nearest_passing(conn, query, [cube], 1, where, 1)
    assert nearest[0][0] == 10**9
    assert passing == nearest[1:]
    assert only_nearest == []  # of the 1 nearest, none passes
    hits = (await services.search.search(alice, SearchQuery(query=asked))).results
    assert hits[0].content == "Alice drinks green tea every morning"


async def test_search_never_returns_memories_from_unreadable_cubes(services: Services) -> None:
    alice = await _alice_with_facts(services)
    await services.identities.add("bob")
    bob = agent_named("bob")
    await services.additions.add(bob, None, NewMemory(content="Bob takes his coffee black"))
    result = await services.search.search(
        bob, SearchQuery(query="Alice drinks green tea every morning", k=10)
    )
    assert {hit.cube for hit in result.results} == {"@bob"}
    assert result.cubes == ["@bob"]
    with pytest.raises(Exception, match="does not exist or you have no access"):
        await services.search.search(bob, SearchQuery(query="tea", cubes=["@alice"]))
    assert (await services.search.search(alice, SearchQuery(query="coffee"))).cubes == ["@alice"]


@pytest.mark.parametrize(
    "query", ['"NEAR(tea morning)', "tea*", "-tea", "tea OR", "AND", "col:tea", "{tea}", "tea'", 'tea"']
)
async def test_fts5_operators_in_a_query_are_just_text(services: Services, query: str) -> None:
    alice = await _alice_with_facts(services)
    result = await services.search.search(alice, SearchQuery(query=query, mode="lexical"))
    assert result.mode == "lexical"


@pytest.mark.parametrize("query", ["", "   ", "?!...", "¿¡—"])
async def test_a_query_without_words_is_refused(services: Services, query: str) -> None:
    alice = await _alice_with_facts(services)
    with pytest.raises(InvalidInput, match="no words to search for"):
        await services.search.search(alice, SearchQuery(query=query))


async def test_without_a_model_search_is_lexical_and_says_so(tmp_path: Path) -> None:
    async with open_services(make_config(tmp_path, "none")) as services:
        alice = await _alice_with_facts(services)
        result = await services.search.search(alice, SearchQuery(query="green tea"))
    assert result.mode == "lexical"
    assert result.note is not None and 'model = "none"' in result.note
    assert result.results[0].content.startswith("Alice drinks green tea")


async def test_memories_written_before_the_model_loads_are_embedded_later(
    tmp_path: Path, model_dir: Path
) -> None:
    config = make_config(tmp_path, "none")
    async with open_services(config) as services:
        await _alice_with_facts(services)
    async with open_services(make_config(tmp_path, str(model_dir))) as services:
        await services.vectors.attached.wait()
        alice = agent_named("alice")
        for _ in range(200):
            result = await services.search.search(alice, SearchQuery(query="which hot beverage is preferred"))
            if result.results and result.results[0].match.vector_rank == 1:
                break
            await anyio.sleep(0.05)
    assert result.results[0].content.startswith("Alice drinks green tea")


def _fts_matches(text: str, match: str) -> int:
    conn = connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61 remove_diacritics 2')")
        conn.execute("INSERT INTO t VALUES (?)", (text,))
        return int(conn.execute("SELECT count(*) FROM t WHERE t MATCH ?", (match,)).fetchone()[0])
    finally:
        conn.close()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_becomes_a_valid_fts5_query_or_none(text: str) -> None:
    match = fts_query(text)
    if match is not None:
        _fts_matches(text, match)  # never an FTS5 syntax error


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x24F, exclude_categories=["Cs"]), max_size=200))
def test_text_in_latin_scripts_finds_itself(text: str) -> None:
    match = fts_query(text)
    if match is not None:
        assert _fts_matches(text, match) == 1
