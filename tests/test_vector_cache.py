"""The in-memory vector cache gives exactly what a brute-force search over the stored vectors gives: in float32
directly, in int8 once its shortlist is re-scored with the float32 vectors."""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import NewMemory, SearchQuery, agent_named, open_services, sqlite_driver
from daemon.config import Config
from daemon.vector_cache import VectorCache, matmul_integer_model
from tests.conftest import BOTH, make_config

BACKENDS = BOTH  # the tests that take `backend` run on the SQLite file and on PostgreSQL


def unit(rng: np.random.Generator, n: int, dims: int = 8) -> np.ndarray:
    vectors = rng.standard_normal((n, dims)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


BLOCKS = st.sampled_from([1, 7, 64, 8192])  # rows per block: one, a few, and more than any test holds
PRECISIONS = st.sampled_from(["float32", "int8"])


def nearest(
    cache: VectorCache, vectors: np.ndarray, query: np.ndarray, cube_ids: list[int], k: int
) -> list[tuple[int, float]]:
    """What the vector index returns: the cache's answer, an int8 shortlist re-scored with the float32
    vectors (row seq of `vectors` is memory seq) as daemon/vectors.py does with the stored ones."""
    found = cache.nearest(query, cube_ids, k)
    if cache.exact:
        return found
    seqs = [seq for seq, _ in found]
    exact = dict(zip(seqs, (vectors[seqs] @ query).tolist(), strict=True)) if seqs else {}
    return sorted(exact.items(), key=lambda item: (-item[1], item[0]))[:k]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 300),
    st.integers(1, 20),
    st.integers(0, 10_000),
    st.lists(st.integers(0, 3), max_size=3),
    BLOCKS,
    PRECISIONS,
)
def test_nearest_matches_brute_force_within_the_given_cubes(
    n: int, k: int, seed: int, wanted: list[int], block_rows: int, precision: str
) -> None:
    rng = np.random.default_rng(seed)
    vectors, cubes = unit(rng, n), rng.integers(0, 4, n)
    cache = VectorCache(8, block_rows=block_rows, precision=precision)  # type: ignore[arg-type]
    cache.upsert((seq, int(cubes[seq]), vectors[seq]) for seq in range(n))
    query = unit(rng, 1)[0]
    got = nearest(cache, vectors, query, wanted, k)
    pool = [seq for seq in range(n) if cubes[seq] in wanted]
    expected = sorted(pool, key=lambda seq: (-float(vectors[seq] @ query), seq))[:k]
    assert [seq for seq, _ in got] == expected or np.allclose(
        [sim for _, sim in got], [float(vectors[seq] @ query) for seq in expected], atol=1e-6
    )


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3000),
    st.integers(1, 60),
    st.integers(1, 60),
    st.integers(0, 10_000),
    BLOCKS,
    PRECISIONS,
)
def test_the_shortlist_for_fewer_rows_comes_first_and_holds_their_exact_top(
    n: int, k: int, first: int, seed: int, block_rows: int, precision: str
) -> None:
    """`nearest_within(k, first)`: the shortlist `nearest` gives for k, of which the first rows it counts,
    re-scored alone, give the exact nearest `first` (so a search whose `first` all pass reads no more)."""
    first = min(first, k)
    rng = np.random.default_rng(seed)
    # Near copies of a few vectors: many rows close together, as the shortlists of real collections are.
    seeds = unit(rng, 12, dims=32)
    vectors = seeds[rng.integers(0, 12, n)] + rng.normal(0, 0.05, (n, 32)).astype(np.float32)
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    cache = VectorCache(32, block_rows=block_rows, precision=precision)  # type: ignore[arg-type]
    cache.upsert((seq, 1, vectors[seq]) for seq in range(n))
    query = unit(rng, 1, dims=32)[0]
    capped = cache.capped
    found, inner = cache.nearest_within(query, [1], k, first)
    assert sorted(found) == sorted(cache.nearest(query, [1], k))
    head = [seq for seq, _ in found[:inner]]
    exact = dict(zip(head, (vectors[head] @ query).tolist(), strict=True))
    got = sorted(exact, key=lambda seq: (-exact[seq], seq))[:first]
    expected = sorted(range(n), key=lambda seq: (-float(vectors[seq] @ query), seq))[:first]
    if cache.capped == capped:  # the bound held (int8): the true top is in the shortlist
        assert got == expected or np.allclose(
            [exact[seq] for seq in got], [float(vectors[seq] @ query) for seq in expected], atol=1e-6
        )


@pytest.mark.parametrize("block_rows", [64, 8192])
def test_a_new_vector_replaces_the_old_one_and_compaction_keeps_the_rest(block_rows: int) -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 5000)
    cache = VectorCache(8, block_rows=block_rows)
    cache.upsert((seq, 1, vectors[seq]) for seq in range(5000))
    for _ in range(3):  # enough replacements to trigger compaction
        cache.upsert((seq, 1, vectors[(seq + 1) % 5000]) for seq in range(2000))
    assert len(cache) == 5000
    (best, similarity), *_ = cache.nearest(vectors[1], [1], 3)
    assert best == 0 and similarity == pytest.approx(1.0)  # seq 0 now holds vector 1; seq 1 holds vector 2
    (best, _), *_ = cache.nearest(vectors[2], [1], 3)
    assert best == 1
    assert cache.similarities(vectors[1], [0, 1, 4999]) == pytest.approx(
        {0: 1.0, 1: float(vectors[2] @ vectors[1]), 4999: float(vectors[4999] @ vectors[1])}
    )
    cache.discard([0])
    assert 0 not in [seq for seq, _ in cache.nearest(vectors[1], [1], 10)]


@pytest.mark.anyio
async def test_search_gives_the_same_results_with_and_without_the_cache(
    tmp_path: Path, model_dir: Path
) -> None:
    results = []
    for use_cache in (True, False):
        directory = tmp_path / str(use_cache)
        directory.mkdir()
        config = make_config(directory, str(model_dir))
        config = msgspec.structs.replace(
            config, search=msgspec.structs.replace(config.search, vector_cache=use_cache)
        )
        async with open_services(config) as services:
            await services.vectors.attached.wait()
            await services.identities.add("alice")
            alice = agent_named("alice")
            await services.additions.add_batch(
                alice, None, [NewMemory(content=f"Memory number {i} about topic {i % 7}") for i in range(60)]
            )
            found = await services.search.search(alice, SearchQuery(query="topic three", mode="vector", k=20))
            results.append([(hit.content, hit.match.similarity) for hit in found.results])
    assert [c for c, _ in results[0]] == [c for c, _ in results[1]]
    assert np.allclose([s for _, s in results[0]], [s for _, s in results[1]], atol=1e-3)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 300),
    st.integers(1, 20),
    st.integers(0, 10_000),
    st.lists(st.integers(0, 299), max_size=40),
    st.lists(st.integers(0, 299), max_size=40),
    st.booleans(),
    BLOCKS,
    PRECISIONS,
)
def test_nearest_matches_brute_force_after_replacements_and_discards(
    n: int,
    k: int,
    seed: int,
    replaced: list[int],
    discarded: list[int],
    every_cube: bool,
    block_rows: int,
    precision: str,
) -> None:
    """Searching every cube that holds vectors skips the cube mask; replaced and discarded rows must still
    never be returned, and the answer is the brute-force one either way."""
    rng = np.random.default_rng(seed)
    vectors, cubes = unit(rng, n), rng.integers(0, 3, n)
    cache = VectorCache(8, block_rows=block_rows, precision=precision)  # type: ignore[arg-type]
    cache.upsert((seq, int(cubes[seq]), vectors[seq]) for seq in range(n))
    replaced = [seq for seq in replaced if seq < n]
    fresh = unit(rng, len(replaced))
    cache.upsert((seq, int(cubes[seq]), fresh[i]) for i, seq in enumerate(replaced))
    for i, seq in enumerate(replaced):
        vectors[seq] = fresh[i]
    gone = {seq for seq in discarded if seq < n}
    cache.discard(gone)
    wanted = [0, 1, 2] if every_cube else [1]
    query = unit(rng, 1)[0]
    got = nearest(cache, vectors, query, wanted, k)
    pool = [seq for seq in range(n) if cubes[seq] in wanted and seq not in gone]
    expected = sorted(pool, key=lambda seq: (-float(vectors[seq] @ query), seq))[:k]
    assert len(got) == len(expected)
    assert not {seq for seq, _ in got} & gone
    assert np.allclose([sim for _, sim in got], [float(vectors[seq] @ query) for seq in expected], atol=1e-6)
    assert all(np.isclose(sim, float(vectors[seq] @ query), atol=1e-6) for seq, sim in got)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["upsert", "discard"]),
            st.lists(st.one_of(st.integers(0, 3000), st.integers(0, 2**62)), max_size=30),
        ),
        max_size=40,
    ),
    st.integers(0, 2**32 - 1),
    BLOCKS,
)
def test_every_seq_dense_or_sparse_finds_its_latest_vector(
    steps: list[tuple[str, list[int]]], seed: int, block_rows: int
) -> None:
    """Seqs near the rows held and seqs far past them (kept apart by the cache's seq -> row map), added,
    replaced and discarded in any order: the cache holds exactly the live ones, each with its latest vector."""
    rng = np.random.default_rng(seed)
    cache = VectorCache(8, block_rows=block_rows)
    model: dict[int, np.ndarray] = {}
    for op, seqs in steps:
        if op == "upsert":
            fresh = unit(rng, len(seqs))
            cache.upsert((seq, 1, fresh[i]) for i, seq in enumerate(seqs))
            model.update((seq, fresh[i]) for i, seq in enumerate(seqs))
        else:
            cache.discard(seqs)
            for seq in seqs:
                model.pop(seq, None)
        assert len(cache) == len(model)
    query = unit(rng, 1)[0]
    got = dict(cache.nearest(query, [1], len(model) + 1))
    assert set(got) == set(model)
    assert all(np.isclose(got[seq], float(vector @ query), atol=1e-6) for seq, vector in model.items())
    assert cache.similarities(query, [*model, -5, 2**63 - 1]).keys() == model.keys()


def test_the_seq_to_row_map_costs_a_few_bytes_a_row() -> None:
    """At 100k rows the ids cost ~16 bytes a row (seq and cube id arrays) and the seq -> row map ~4 (an int32
    array indexed by seq), not the ~110 of a dict of Python ints (~10 MiB at 100k)."""
    rows = 100_000
    vectors = unit(np.random.default_rng(0), rows)
    tracemalloc.start()
    try:
        cache = VectorCache(8, block_rows=8192)
        cache.reserve(rows)
        for start in range(0, rows, 10_000):
            cache.upsert((seq, 1, vectors[seq]) for seq in range(start, start + 10_000))
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(cache) == rows
    assert held - cache.vector_bytes < 24 * rows + 2**20


def test_adding_past_a_full_cache_never_copies_its_vectors() -> None:
    """The cache filled to the brim, then one more row: memory grows by one block, never by a second copy of
    every vector (that copy was the daemon's RSS peak at 100k memories)."""
    rows, dims = 20_000, 384
    vectors = unit(np.random.default_rng(3), rows + 1, dims)
    cache = VectorCache(dims, block_rows=4096)
    cache.reserve(rows)
    cache.upsert((seq, 1, vectors[seq]) for seq in range(rows))
    held = cache.vector_bytes
    assert held <= (rows + 4096) * dims * 4
    tracemalloc.start()
    try:
        cache.upsert([(rows, 1, vectors[rows])])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < held / 2, f"adding one row allocated {peak} bytes with {held} held"
    assert cache.nearest(vectors[rows], [1], 1)[0][0] == rows


@pytest.mark.anyio
async def test_vectors_stored_before_a_restart_are_in_the_cache_after_it(
    tmp_path: Path, model_dir: Path
) -> None:
    """Steps: add memories, close, open again (the cache is filled from the table, page by page); a vector
    search gives the same hits and similarities as before the restart."""
    config = make_config(tmp_path, str(model_dir))
    answers = [await vector_search(config, first) for first in (True, False)]
    assert len(answers[0]) == 10 and answers[0] == answers[1]


async def vector_search(config: Config, first: bool) -> list[tuple[str, float | None]]:
    """Open the daemon core on `config` (adding alice's 40 memories when `first`): the (content, similarity)
    of a search by meaning."""
    alice = agent_named("alice")
    async with open_services(config) as services:
        await services.vectors.attached.wait()
        if first:
            await services.identities.add("alice")
            await services.additions.add_batch(
                alice, None, [NewMemory(content=f"Memory number {i} about topic {i % 7}") for i in range(40)]
            )
        found = await services.search.search(alice, SearchQuery(query="topic three", mode="vector", k=10))
        return [(hit.content, hit.match.similarity) for hit in found.results]


def test_int8_holds_about_a_quarter_of_the_float32_bytes() -> None:
    rows, dims = 40_000, 384
    vectors = unit(np.random.default_rng(4), rows, dims)
    sizes = {}
    for precision in ("float32", "int8"):
        cache = VectorCache(dims, precision=precision)  # type: ignore[arg-type]
        cache.upsert((seq, 1, vectors[seq]) for seq in range(rows))
        sizes[precision] = cache.vector_bytes
    assert sizes["float32"] >= rows * dims * 4
    assert sizes["int8"] <= (rows + 2 * 8192) * (dims + 4)  # codes and a scale a row, one block to spare


def near_copies(rng: np.random.Generator, seeds: np.ndarray, n: int, noise: float) -> np.ndarray:
    """n unit vectors, each a seed vector plus a little noise: dense clusters, as real memories of the
    same few topics make (the shape bench/seed.py gives its 100k databases)."""
    rows = seeds[rng.integers(0, len(seeds), n)] + rng.normal(0, noise, (n, seeds.shape[1])).astype(
        np.float32
    )
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.anyio
async def test_int8_top_k_is_the_float32_top_k_over_minilm_vectors(tmp_path: Path, model_dir: Path) -> None:
    """Steps: embed 200 notes and 20 questions with the real MiniLM model; fill a float32 and an int8 cache
    with 30,000 near copies of the notes (clusters of ~150 vectors within a few hundredths of each other);
    for k = 8 (an add's similarity check) and 200 (a search's KNN depth), whenever the shortlist did not hit
    its cap (the case its bound guarantees; 9 in 10 here at least, in clusters denser than real ones), the
    int8 shortlist re-scored with the float32 vectors gives the float32 cache's seqs in its order and the
    same similarities."""
    topics = ["billing", "the release", "Lena's garden", "the database", "a trip to Lisbon", "hiring"]
    verbs = ["decided about", "worried about", "wrote a note on", "asked Tom about", "fixed", "planned"]
    notes = [
        f"{name} {verb} {topic} on day {day}"
        for day in range(6)
        for name in ("Ana", "Lena")
        for verb in verbs[:3]
        for topic in topics
    ][:200]
    questions = [f"What did {name} decide about {topic}?" for name in ("Ana", "Lena") for topic in topics]
    questions += [
        "Who went to Lisbon?",
        "Which bug was fixed?",
        "Any news on hiring?",
        "garden plans",
        "database migration",
        "release date",
        "invoices",
        "Tom",
    ]
    async with open_services(make_config(tmp_path, str(model_dir))) as services:
        await services.vectors.attached.wait()
        seeds = await services.embedder.embed(notes)
        queries = await services.embedder.embed(questions)
    rng = np.random.default_rng(7)
    vectors = near_copies(rng, seeds.astype(np.float32), 30_000, 0.02)
    exact, coded = VectorCache(384, precision="float32"), VectorCache(384, precision="int8")
    for cache in (exact, coded):
        cache.upsert((seq, 1, vectors[seq]) for seq in range(len(vectors)))
    guaranteed = 0
    for query in queries.astype(np.float32):
        for k in (8, 200):
            capped = coded.capped
            want = exact.nearest(query, [1], k)
            got = nearest(coded, vectors, query, [1], k)
            if coded.capped == capped:  # the shortlist's bound held: the true top k are in it
                guaranteed += 1
                assert [seq for seq, _ in got] == [seq for seq, _ in want]
                assert np.allclose([s for _, s in got], [s for _, s in want], rtol=0, atol=1e-6)
    assert guaranteed >= 0.9 * 2 * len(queries)


@pytest.mark.anyio
async def test_vector_search_is_the_same_from_a_float32_and_an_int8_cache(
    tmp_path: Path, model_dir: Path, backend: str | None
) -> None:
    """On both stores. Steps: add 60 memories with the cache in float32 and search by meaning (k 8 and 20)
    and hybrid; close; open the same store with the cache in int8 (filled from the table): the same searches
    give the same hits with the same similarities and scores (its shortlist re-scored, the lexical hits'
    similarities read, from the stored vectors); an add's similarity check finds the memory it nearly
    repeats."""
    alice = agent_named("alice")
    answers = []
    for precision in ("float32", "int8"):
        config = make_config(tmp_path, str(model_dir), url=backend)
        search = msgspec.structs.replace(config.search, vector_precision=precision)
        async with open_services(msgspec.structs.replace(config, search=search)) as services:
            await services.vectors.attached.wait()
            if precision == "float32":
                await services.identities.add("alice")
                await services.additions.add_batch(
                    alice,
                    None,
                    [NewMemory(content=f"Memory number {i} about topic {i % 7}") for i in range(60)],
                )
            answer = []
            for query, k, mode in (
                ("topic three", 20, "vector"),
                ("memory number seven", 8, "vector"),
                ("topic", 15, "hybrid"),
            ):
                found = await services.search.search(alice, SearchQuery(query=query, mode=mode, k=k))
                answer.append(
                    [(hit.content, hit.match.similarity or 0.0, hit.score) for hit in found.results]
                )
            answers.append(answer)
            if precision == "int8":
                added = await services.additions.add(
                    alice, None, NewMemory(content="Memory number 12 about topic 5!")
                )
    for before, after in zip(*answers, strict=True):
        assert before and [hit[0] for hit in before] == [hit[0] for hit in after]
        assert np.allclose([hit[1:] for hit in before], [hit[1:] for hit in after], rtol=1e-6, atol=1e-6)
    assert added.similar and added.similar[0].content == "Memory number 12 about topic 5"


def test_the_onnx_model_of_the_integer_product_is_the_one_onnx_builds() -> None:
    """The int8 kernel's graph is written as protobuf by hand (onnx is a test dependency only): it must be
    a valid model, the same graph onnx's helper builds."""
    import onnx
    from onnx import TensorProto, helper

    built = onnx.load_from_string(matmul_integer_model())
    onnx.checker.check_model(built, full_check=True)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])],
        "int8_knn",
        [
            helper.make_tensor_value_info("A", TensorProto.UINT8, ["m", "d"]),
            helper.make_tensor_value_info("B", TensorProto.INT8, ["d", "n"]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, ["m", "n"])],
    )
    assert built.graph == graph and built.ir_version == 8
    assert [(o.domain, o.version) for o in built.opset_import] == [("", 13)]


def test_an_older_files_vec0_table_is_copied_into_a_plain_table(tmp_path: Path, model_dir: Path) -> None:
    """Steps: a store whose vectors are in a sqlite-vec vec0 table (as files written before the int8 cache
    hold them); open it: the vectors are in a plain table (read by key in microseconds), every one of them,
    and a search by meaning finds what it found before."""
    import anyio

    config = make_config(tmp_path, str(model_dir))
    before = anyio.run(vector_search, config, True)
    path = str(config.database_path)
    conn = sqlite_driver.connect(path)
    stored = conn.execute("SELECT rowid, cube_id, embedding FROM memory_vectors ORDER BY rowid").fetchall()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DROP TABLE memory_vectors")
    conn.execute(
        "CREATE VIRTUAL TABLE memory_vectors USING vec0("
        "cube_id integer partition key, embedding float[384] distance_metric=cosine)"
    )
    conn.executemany("INSERT INTO memory_vectors (rowid, cube_id, embedding) VALUES (?, ?, ?)", stored)
    conn.execute("COMMIT")
    conn.close()
    after = anyio.run(vector_search, config, False)
    conn = sqlite_driver.connect(path)
    try:
        [(sql,)] = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'memory_vectors'").fetchall()
        again = conn.execute("SELECT rowid, cube_id, embedding FROM memory_vectors ORDER BY rowid").fetchall()
    finally:
        conn.close()
    assert "vec0" not in sql and again == stored and len(stored) == 40
    assert before == after


FAR = 2**40  # a cube id past the table `nearest` looks cube ids up in (np.isin then)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 300),
    st.integers(1, 20),
    st.integers(0, 10_000),
    st.lists(st.sampled_from([0, 1, 5, FAR, -3]), min_size=1, max_size=3),
    st.lists(st.integers(0, 299), max_size=40),
    BLOCKS,
    PRECISIONS,
)
def test_the_cube_filter_keeps_exactly_the_given_cubes_live_rows(
    n: int, k: int, seed: int, wanted: list[int], gone: list[int], block_rows: int, precision: str
) -> None:
    """Cube 0 (retired rows hold cube -1), an id past the lookup table, an id no row holds: the filtered
    search (some live cube not wanted) is still the brute-force top k of the wanted cubes' live rows."""
    rng = np.random.default_rng(seed)
    vectors, cubes = unit(rng, n), rng.choice([0, 1, 5, 7, FAR], n)
    cache = VectorCache(8, block_rows=block_rows, precision=precision)  # type: ignore[arg-type]
    cache.upsert((seq, int(cubes[seq]), vectors[seq]) for seq in range(n))
    discarded = {seq for seq in gone if seq < n}
    cache.discard(discarded)
    query = unit(rng, 1)[0]
    got = nearest(cache, vectors, query, wanted, k)
    pool = [seq for seq in range(n) if cubes[seq] in wanted and seq not in discarded]
    expected = sorted(pool, key=lambda seq: (-float(vectors[seq] @ query), seq))[:k]
    assert len(got) == len(expected) and not {seq for seq, _ in got} & discarded
    assert np.allclose([sim for _, sim in got], [float(vectors[seq] @ query) for seq in expected], atol=1e-6)


def test_a_search_whose_shortlist_hits_its_cap_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Steps: 2,000 vectors within rounding of each other (every row's bound reaches the best one's);
    search for the nearest 1 twice: both hit the shortlist's cap, both are counted, and the first (not the
    second: once per 100) leaves a warning an operator can act on."""
    rng = np.random.default_rng(5)
    base = unit(rng, 1, 384)[0]
    rows = base + rng.normal(0, 1e-5, (2000, 384)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    cache = VectorCache(384, precision="int8")
    cache.upsert((seq, 1, rows[seq]) for seq in range(len(rows)))
    with caplog.at_level("WARNING", logger="daemon.vector_cache"):
        for _ in range(2):
            assert len(cache.nearest(base, [1], 1)) > 1
    assert cache.capped == 2
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "1 int8 searches" in warnings[0] and "vector_precision" in warnings[0]


def test_the_integer_product_is_the_same_on_one_or_two_threads() -> None:
    """A search alone on an idle machine splits the product over two threads: the same integers."""
    from daemon.vector_cache import _Int8, _matmul_integer, query_levels

    rng = np.random.default_rng(6)
    codes = rng.integers(-127, 128, (384, 20_000), dtype=np.int8)
    facts = np.stack(
        [rng.random(20_000), rng.random(20_000), (query_levels() + 1.0) * codes.sum(axis=0)]
    ).astype(np.float32)
    coded = _Int8.coded_query(unit(rng, 1, 384)[0])
    one, two = np.empty(20_000, np.float32), np.empty(20_000, np.float32)
    for session, out in ((_matmul_integer(1), one), (_matmul_integer(2), two)):
        _Int8.product(session, codes, facts, coded.lifted, [coded], [out])
    assert np.array_equal(one, two)


def test_the_integer_product_is_exact_on_this_cpu_even_where_8_bit_products_saturate() -> None:
    """Steps: rows and a query whose codes reach ±127 (products a CPU without VNNI adds in 16 bits, where they
    would saturate); each row's integer product with the query, taken out of the similarity the cache
    computes, is numpy's exact one, on one thread and on two."""
    from daemon.vector_cache import _Int8, _matmul_integer, query_levels

    rng = np.random.default_rng(11)
    codes = rng.choice(np.array([-127, 127], np.int8), (384, 5_000))
    facts = np.stack([np.ones(5_000), np.zeros(5_000), (query_levels() + 1.0) * codes.sum(axis=0)]).astype(
        np.float32
    )
    query = rng.choice(np.array([-1.0, 1.0], np.float32), 384) / np.sqrt(384)
    coded = _Int8.coded_query(query.astype(np.float32))
    query_codes = np.rint(coded.decoded / coded.scales[0]).astype(np.int64)
    exact = (query_codes @ codes.astype(np.int64)).astype(np.float32) * coded.scales[0]
    for session in (_matmul_integer(1), _matmul_integer(2)):
        out = np.empty(5_000, np.float32)
        _Int8.product(session, codes, facts, coded.lifted, [coded], [out])
        assert np.array_equal(out, exact)


def mapping_of(address: int) -> dict[str, int]:
    """The kB fields of /proc/self/smaps for the mapping holding `address`."""
    fields: dict[str, int] = {}
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(part, 16) for part in head.split("-"))
            inside = start <= address < end
        elif inside and line.split()[-1] == "kB":
            fields[head.rstrip(":")] = int(line.split()[1])
    return fields


@pytest.mark.skipif(
    not Path("/sys/kernel/mm/transparent_hugepage/enabled").exists()
    or "[never]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text(),
    reason="no transparent huge pages here",
)
def test_a_full_block_of_codes_sits_on_huge_pages_and_its_slack_is_not_resident() -> None:
    """Every search reads every row: a block wholly on huge pages costs less CPU to read (bench/README.md).
    Steps: fill one int8 block (16,384 rows, 6 MiB); its mapping holds 6 MiB of huge pages and no more
    resident memory than the block."""
    rows = unit(np.random.default_rng(8), 16_384, 384)
    cache = VectorCache(384, precision="int8")
    cache.upsert((seq, 1, rows[seq]) for seq in range(len(rows)))
    (block,) = cache._snapshot[0]
    mapping = mapping_of(block.ctypes.data)
    assert mapping["AnonHugePages"] == block.nbytes // 1024 == 6144
    assert mapping["Rss"] <= block.nbytes // 1024 + 4


def test_searches_at_once_get_what_each_gets_alone_from_products_made_together() -> None:
    """Steps: 60,000 int8 rows; the nearest 20 of each of 48 queries (shortlists re-scored), one at a time;
    then the same 48 from 16 threads released at once (3 each): the same answers, from fewer products than
    queries (unless the machine has a core for each thread)."""
    from daemon.cores import usable_cores

    rng = np.random.default_rng(9)
    rows = unit(rng, 60_000, 384)
    queries = unit(rng, 48, 384)
    cache = VectorCache(384, precision="int8")
    cache.upsert((seq, seq % 3, rows[seq]) for seq in range(len(rows)))
    asked_before = cache._batches.queries
    alone = [nearest(cache, rows, query, [0, 1], 20) for query in queries]
    # A query asks again, in two parts, when its shortlist is capped: the same queries then as together.
    asked_alone = cache._batches.queries - asked_before
    before = cache._batches.products, cache._batches.queries
    together: list[list[tuple[int, float]] | None] = [None] * len(queries)
    start = threading.Barrier(16)

    def search(first: int) -> None:
        start.wait()
        for index in range(first, len(queries), 16):
            together[index] = nearest(cache, rows, queries[index], [0, 1], 20)

    threads = [threading.Thread(target=search, args=(first,)) for first in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert together == alone
    products = cache._batches.products - before[0]
    asked = cache._batches.queries - before[1]
    assert asked == asked_alone >= len(queries) and (products < asked or usable_cores() >= 16)


def test_a_failed_product_fails_every_search_it_was_made_for_and_the_next_ones_go_on() -> None:
    """Steps: products that take a while (so that searches wait and are batched), one of which fails: every
    search of that product gets its error, every other search its own result, and nothing waits forever."""
    from daemon.vector_batches import Batches

    def compute(queries: list[int], alone: bool) -> list[int]:
        time.sleep(0.02)
        if 13 in queries:
            raise ValueError(f"no product for {sorted(queries)}")
        return [query * 2 for query in queries]

    batches: Batches[int, int] = Batches(compute, leaders=2)
    got: dict[int, int | str] = {}
    start = threading.Barrier(24)

    def search(query: int) -> None:
        start.wait()
        try:
            got[query] = batches.run(query)
        except ValueError as exc:
            got[query] = str(exc)

    threads = [threading.Thread(target=search, args=(query,)) for query in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    failed = {query for query, answer in got.items() if isinstance(answer, str)}
    assert len(got) == 24 and 13 in failed and batches.queries == 24 and batches.products < 24
    assert all(got[query] == 2 * query for query in set(range(24)) - failed)
    assert len({got[query] for query in failed}) == 1  # one product's error, shared by its searches


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_rows_tied_in_similarity_come_lower_seq_first_and_the_lower_seqs_win_the_last_places(
    precision: str,
) -> None:
    """Steps: 40 copies of one vector under shuffled seqs, among 200 others; the 10 nearest are the 10
    lowest seqs of the copies, in seq order (the rule every ranking here follows for ties)."""
    rng = np.random.default_rng(3)
    others = rng.normal(size=(200, 384)).astype(np.float32)
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    twin = np.full(384, 1 / np.sqrt(384), np.float32)
    seqs = rng.permutation(np.arange(1000, 1240)).tolist()
    rows = [(seqs[i], 1, twin if i < 40 else others[i - 40]) for i in range(240)]
    cache = VectorCache(384, precision=precision)
    cache.upsert(rows)
    vectors = np.zeros((1240, 384), np.float32)
    for seq, _, vector in rows:
        vectors[seq] = vector
    found = nearest(cache, vectors, twin.astype(np.float32), [1], 10)
    assert [seq for seq, _ in found] == sorted(seqs[:40])[:10]


@pytest.mark.parametrize("again", ["the same vector", "a new vector"])
def test_a_memory_whose_vector_is_written_while_a_search_runs_is_still_found_by_that_search(
    again: str,
) -> None:
    """Steps: an int8 cache of 300 memories; a search's product runs, and while it does the event loop writes
    the vector of the memory nearest to the query again (the same one, as a PostgreSQL cache reads its own
    writes back; or a new one, as an update or re-embedding writes). The search still finds that memory first,
    and the next search finds it with the vector written."""
    from daemon.vector_batches import Batches

    rng = np.random.default_rng(11)
    vectors = unit(rng, 300, 8)
    cache = VectorCache(8, precision="int8")
    cache.upsert([(seq, 1, vectors[seq]) for seq in range(300)])
    written = vectors[42] if again == "the same vector" else unit(rng, 1, 8)[0]
    product = cache._int8_scores

    def written_meanwhile(queries: list[Any], alone: bool) -> list[Any]:
        scored = product(queries, alone)
        cache.upsert([(42, 1, written)])
        return scored

    cache._batches = Batches(written_meanwhile)
    assert cache.nearest(vectors[42], [1], 5)[0][0] == 42
    cache._batches = Batches(product)
    assert cache.nearest(written, [1], 5)[0][0] == 42
    assert len(cache) == 300
