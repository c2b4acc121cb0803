"""Retrieval quality on LongMemEval-S (dev60) through memos's own MCP tools, stage by stage, beside the
official MCP memory server; and search latency per configuration at 10k and 100k memories.

    python bench/retrieval.py                          # everything (~1 h on 2 cores, first load included)
    python bench/retrieval.py --sizes --no-peer        # quality only
    python bench/retrieval.py --configurations "plain hybrid (RRF)" "+ time = full (default)" --no-cv

Each question's haystack is loaded into its own cube with `memory_add_batch`, one `message` memory per
turn (metadata: session, turn, role, date; occurred_at: the session's date), and queried with
`memory_search` as a model would call it (reference_time: the question's date). Metrics are LongMemEval's
own: recall_any@k (some gold item in the top k), recall_all@k (every gold item in the top k) and NDCG@k
(its DCG variant), k = 1, 5, 10, at turn level (gold: turns marked has_answer) and at session level
(sessions in the order their turns rank; gold: answer sessions), per question type; abstention questions
(`_abs`) are skipped as the benchmark does.

Before the configurations run, the fusion weights are chosen by 5-fold cross-validation (in-process, on the
candidates each signal ranks) and the held-out folds' numbers are printed. The configurations then run
through memosd, each with its own [search] weights: the plain baselines, each stage added in turn, and each
removed from the default pipeline. The loaded database is kept in bench/results/retrieval/ and reused while
the dataset and the loading code are unchanged (--fresh reloads; an interrupted load resumes). Prints
markdown tables and writes bench/results/retrieval.md and retrieval.png.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import math
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.blend_fit import Example, fit
from bench.client import DEFAULT_MODEL, call, wait_for_model
from bench.corpus import memories, queries
from bench.peer import OfficialMemoryServer
from bench.report import RESULTS, machine, percentile, rss_mib, table
from bench.turns import Turn
from daemon import SearchQuery, agent_named, open_services
from daemon.config import BlendWeights, RankWeights, SearchConfig, load_config
from daemon.fusion import SIGNALS, Gathered, fuse, signals
from tests.conftest import RunningDaemon, free_port, mcp_client, start_daemon, stop_daemon, write_config

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "bench-data" / "lme_s_dev60.json.gz"
WORKDIR = RESULTS / "retrieval"
LOADER_VERSION = "1"  # bump when the way turns are stored changes: the kept database is then reloaded
KS = (1, 5, 10)
DEPTH = 100  # results asked for per query: enough turns to rank 10 distinct sessions


@dataclass
class Question:
    id: str
    type: str
    text: str
    date: str  # ISO-8601, the time the question is asked
    turns: list[Turn]
    gold_turns: set[str]
    gold_sessions: set[str]

    @property
    def cube(self) -> str:
        return "lme-" + re.sub(r"[^A-Za-z0-9._-]", "-", self.id)


def iso(dataset_date: str) -> str:
    """'2023/05/25 (Thu) 10:04' -> '2023-05-25T10:04:00Z'."""
    day, _, clock = dataset_date.partition(" (")
    clock = clock.split(") ", 1)[1] if ") " in clock else "00:00"
    return datetime.strptime(f"{day} {clock}", "%Y/%m/%d %H:%M").strftime("%Y-%m-%dT%H:%M:00Z")


def load_questions(path: Path = DATASET) -> list[Question]:
    questions = []
    for item in json.loads(gzip.decompress(path.read_bytes())):
        if item["question_id"].endswith("_abs"):
            continue  # abstention questions have no evidence to retrieve
        turns, gold = [], set()
        for session, date, entries in zip(
            item["haystack_session_ids"], item["haystack_dates"], item["haystack_sessions"], strict=True
        ):
            for index, entry in enumerate(entries):
                turn = Turn(f"{session}#{index}", session, entry["role"], date, entry["content"])
                turns.append(turn)
                if entry.get("has_answer"):
                    gold.add(turn.id)
        questions.append(
            Question(
                item["question_id"],
                item["question_type"],
                item["question"],
                iso(item["question_date"]),
                turns,
                gold,
                set(item["answer_session_ids"]),
            )
        )
    return questions


def interleaved(questions: list[Question]) -> list[Question]:
    """The questions with their types taken in turn, so that a partial load (loading dev60 through the model
    takes hours on a shared machine) holds a balanced subset."""
    by_type: dict[str, list[Question]] = {}
    for question in questions:
        by_type.setdefault(question.type, []).append(question)
    rounds = itertools.zip_longest(*by_type.values())
    return [question for group in rounds for question in group if question is not None]


def loaded_questions(questions: list[Question], workdir: Path = WORKDIR) -> list[Question]:
    """The questions whose cube holds its whole haystack in the kept database (all, once a load completed)."""
    database = workdir / "data" / "memos.db"
    if not database.exists():
        return []
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        held = dict(
            conn.execute(
                "SELECT c.name, count(*) FROM memories m JOIN cubes c ON c.id = m.cube_id GROUP BY c.name"
            )
        )
    return [q for q in questions if held.get(q.cube) == len(haystack(q).items)]


def haystack(question: Question) -> Haystack:
    """A question's turns as memories: one `message` per turn (5 turns are empty and left out)."""
    items = [
        {
            "content": turn.content,
            "kind": "message",
            "occurred_at": iso(turn.date),
            "metadata": {
                "session": turn.session,
                "turn": int(turn.id.rsplit("#", 1)[1]),
                "role": turn.role,
                "date": turn.date,
            },
        }
        for turn in question.turns
        if turn.content.strip()
    ]
    return Haystack(question.cube, question.id, items)


# -- LongMemEval's metrics ------------------------------------------------------------------------------------


def dcg(relevances: Sequence[int], k: int) -> float:
    # LongMemEval's variant: the first two ranks are both undiscounted.
    top = relevances[:k]
    return float(top[0] + sum(rel / math.log2(i) for i, rel in enumerate(top[1:], start=2))) if top else 0.0


def scores(ranked: Sequence[str], gold: set[str], k: int) -> tuple[float, float, float]:
    """recall_any@k, recall_all@k, NDCG@k of one ranking."""
    top = list(ranked[:k])
    found = gold.intersection(top)
    ideal = dcg([1] * len(gold), k)
    ndcg = dcg([1 if item in gold else 0 for item in top], k) / ideal if ideal else 0.0
    return float(bool(found)), float(found == gold), ndcg


def sessions_in_order(turn_ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(turn_id.rsplit("#", 1)[0] for turn_id in turn_ids))


METRICS = [f"{name}@{k}" for name in ("any", "all", "ndcg") for k in KS]


def question_metrics(question: Question, ranked_turns: Sequence[str]) -> dict[str, float]:
    row: dict[str, float] = {}
    for level, ranked, gold in (
        ("turn", ranked_turns, question.gold_turns),
        ("session", sessions_in_order(ranked_turns), question.gold_sessions),
    ):
        for k in KS:
            any_k, all_k, ndcg_k = scores(ranked, gold, k)
            row[f"{level} any@{k}"], row[f"{level} all@{k}"], row[f"{level} ndcg@{k}"] = any_k, all_k, ndcg_k
    return row


def mean_rows(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    return {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}


# -- memos over MCP -------------------------------------------------------------------------------------------


def dataset_fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes() + LOADER_VERSION.encode()).hexdigest()[:16]


@dataclass
class Haystack:
    """One cube's worth of memories to load: a question's haystack or a conversation."""

    cube: str
    description: str
    items: list[dict[str, Any]]  # memory_add_batch items


@dataclass
class PeakRSS:
    """memosd's peak resident memory, MiB: the kernel's high-water mark (VmHWM in /proc/PID/status) read just
    before each daemon the benchmark started is stopped. The kernel raises VmHWM on every page the process
    touches, so a spike lasting one model call counts; a sampled max of VmRSS could only miss such spikes."""

    load: float | None = None  # the daemon that loaded the haystacks (None: a kept database was reused)
    run: float = 0.0  # every daemon of the run, the load's included

    def record(self, daemon: RunningDaemon, *, loading: bool = False) -> None:
        if daemon.process.poll() is not None:
            return  # exited: its /proc entry is gone
        peak = rss_mib(daemon.process.pid)[1]
        self.run = max(self.run, peak)
        if loading:
            self.load = max(self.load or 0.0, peak)

    def summary(self, turns: int) -> str:
        load = (
            f"{self.load:.0f} MiB while loading {turns} turns"
            if self.load is not None
            else "load not measured (a kept database was reused; --fresh reloads)"
        )
        return (
            f"memosd peak RSS (VmHWM): {load}; {self.run:.0f} MiB over the whole run (every memosd started)."
        )


class Memos:
    """One memosd over a kept database that holds every haystack's cube; restartable with other settings."""

    def __init__(
        self,
        model: str,
        fresh: bool,
        workdir: Path = WORKDIR,
        dataset: Path = DATASET,
        url: str | None = None,
        precision: str | None = None,
    ) -> None:
        self.model = model
        self.precision = precision  # [embedder] precision; None: the default
        self.url = url  # a PostgreSQL database instead of the file
        self.workdir, self.dataset = workdir, dataset
        self.manifest = workdir / "manifest.json"
        if fresh and workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.daemon: RunningDaemon | None = None
        self.token = ""
        self.peak = PeakRSS()
        self.loading = False

    def loaded(self) -> bool:
        if not self.manifest.exists():
            return False
        kept = json.loads(self.manifest.read_text())
        return bool(kept["fingerprint"] == dataset_fingerprint(self.dataset) and kept.get("complete"))

    def start(self, search_settings: str = "") -> RunningDaemon:
        self.stop()
        port = free_port()
        embedder = f'precision = "{self.precision}"\n' if self.precision else ""  # still in [embedder]
        config = write_config(
            self.workdir, port=port, model=self.model, extra=embedder + search_settings, url=self.url
        )
        self.daemon = start_daemon(config, self.workdir, port)
        if not self.token:
            self.token = self._bench_token(self.daemon)
        return self.daemon

    def _bench_token(self, daemon: RunningDaemon) -> str:
        """The benchmark agent's token: created once, or issued anew for a kept database."""
        listed = daemon.memos("agent", "list").stdout.split()
        action = "rotate-token" if "bench" in listed else "add"
        return daemon.memos("agent", action, "bench").stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        if self.daemon is not None:
            self.peak.record(self.daemon, loading=self.loading)
            stop_daemon(self.daemon)
            self.daemon = None

    async def load(self, haystacks: list[Haystack]) -> None:
        """Load every haystack into its own cube, as a user's agent would. Resumes an interrupted load: a
        cube already holding all its memories is kept, a partial one is filled up."""
        fingerprint = dataset_fingerprint(self.dataset)
        if self.manifest.exists() and json.loads(self.manifest.read_text())["fingerprint"] != fingerprint:
            shutil.rmtree(self.workdir / "data", ignore_errors=True)
        self.manifest.write_text(json.dumps({"fingerprint": fingerprint, "complete": False}))
        self.loading = True
        try:
            await self._load(haystacks)
        finally:
            self.stop()
            self.loading = False
        self.manifest.write_text(json.dumps({"fingerprint": fingerprint, "complete": True}))

    async def _load(self, haystacks: list[Haystack]) -> None:
        daemon = self.start()
        started, count = time.perf_counter(), 0
        async with mcp_client(daemon.url, self.token) as client:
            await wait_for_model(client)
            held = {c["name"]: c["memory_count"] for c in (await call(client, "cube_list", {}))["cubes"]}
            for number, haystack in enumerate(haystacks, start=1):
                if haystack.cube not in held:
                    await call(
                        client, "cube_create", {"name": haystack.cube, "description": haystack.description}
                    )
                for start in range(held.get(haystack.cube, 0), len(haystack.items), 500):
                    items = haystack.items[start : start + 500]
                    await call(client, "memory_add_batch", {"items": items, "cube": haystack.cube})
                    count += len(items)
                rate = count / (time.perf_counter() - started)
                rss, peak = rss_mib(daemon.process.pid)
                print(
                    f"  loaded {number}/{len(haystacks)} ({count} memories now, {rate:.0f}/s;"
                    f" memosd RSS {rss:.0f} MiB, peak {peak:.0f} MiB)",
                    file=sys.stderr,
                )

    async def ranker(
        self, arguments: dict[str, Any], key: Callable[[dict[str, Any]], str] | None = None
    ) -> Callable[[Any], Awaitable[list[str]]]:
        """Rank a question's cube through `memory_search`; each hit named by `key` of its metadata (by
        default LongMemEval's `session#turn`)."""
        assert self.daemon is not None
        url, token = self.daemon.url, self.token
        name = key or (lambda metadata: f"{metadata['session']}#{metadata['turn']}")

        async def rank(question: Any) -> list[str]:
            async with mcp_client(url, token) as client:
                result = await call(
                    client,
                    "memory_search",
                    {
                        "query": question.text,
                        "cubes": [question.cube],
                        "k": DEPTH,
                        "reference_time": question.date,
                        **arguments,
                    },
                )
            return [name(hit["metadata"]) for hit in result["results"]]

        return rank


# -- choosing the fusion weights by cross-validation ----------------------------------------------------------

# The blend's signal sets tried: the base (lexical, vector, time, speaker) and each further stage added.
BASE_SIGNALS = ("lexical", "vector", "time", "speaker")
SIGNAL_SETS = [
    BASE_SIGNALS,
    *((*BASE_SIGNALS, extra) for extra in ("exact", "context", "episode", "entity", "graph")),
]
CANDIDATE_SIGNALS = (
    "lexical",
    "vector",
    "exact",
    "context",
    "entity",
    "graph",
)  # signals that bring candidates
L2_GRID = (1e-2, 1e-3, 1e-4)  # the blend fit's regularisation, chosen with the signal set
RRF_GRID: dict[str, tuple[float, ...]] = {
    "k": (15.0, 30.0, 60.0),
    "vector": (1.0, 1.5),
    "exact": (0.0, 0.5),
    "context": (0.0, 0.5),
    "episode": (0.0, 0.25),
    "time": (0.0, 1.0),
}  # lexical stays 1: scaling every weight alike changes no ranking
OBJECTIVE = ("turn any@10", "turn all@10", "turn ndcg@10")
FOLDS = 5


@dataclass
class Candidates:
    """One question's candidates (all signals on), as each fusion needs them."""

    gathered: Gathered
    signals: dict[int, dict[str, float]]
    turn_of: dict[int, str]

    def example(self, question: Question, names: Sequence[str]) -> tuple[list[int], Example]:
        """The candidates the named signals bring, with those signals' values."""
        seqs = sorted(
            {
                seq
                for name in CANDIDATE_SIGNALS
                if name in names
                for ranks in self.gathered.lists[name]
                for seq in ranks
            }
        )
        values = np.array([[self.signals[seq].get(name, 0.0) for name in names] for seq in seqs])
        gold = np.array([self.turn_of[seq] in question.gold_turns for seq in seqs])
        return seqs, Example(values.reshape(len(seqs), len(names)), gold)

    def blended(self, question: Question, names: Sequence[str], weights: np.ndarray) -> list[str]:
        seqs, example = self.example(question, names)
        scores = example.signals @ weights
        order = sorted(range(len(seqs)), key=lambda i: (-scores[i], seqs[i]))
        return [self.turn_of[seqs[i]] for i in order[:DEPTH]]


LME_TURN = "json_extract(m.metadata, '$.session') || '#' || json_extract(m.metadata, '$.turn')"


async def gather_candidates(
    questions: Sequence[Any], workdir: Path = WORKDIR, turn_sql: str = LME_TURN
) -> dict[str, Candidates]:
    """Every question's candidates with each signal's ranks and scores (all signals on), in-process on the
    kept database, so that any weighting can be fused again without searching again. A question has `id`,
    `text`, `cube` and `date`; `turn_sql` names a memory as the questions' gold turns do."""
    config = load_config(workdir / "memos.toml", environ={"HOME": str(workdir)})
    everything_on = msgspec.structs.replace(
        config.search,
        fusion="blend",
        blend=BlendWeights(**{name: 1.0 for name in SIGNALS}),
    )
    config = msgspec.structs.replace(config, search=everything_on)
    found = {}
    async with open_services(config) as core:
        await core.vectors.attached.wait()
        await core.entities.idle.wait()  # a database loaded before the entity index: indexed at start
        agent = agent_named("bench")
        for question in questions:
            query = SearchQuery(
                query=question.text, cubes=[question.cube], k=DEPTH, reference_time=question.date
            )
            gathered = await core.search.candidates(agent, query)
            async with core.store.read() as conn:
                rows = await conn.rows(
                    f"SELECT m.seq AS seq, {turn_sql} AS turn FROM memories m JOIN cubes c ON c.id = m.cube_id"
                    " WHERE c.name = ?",
                    [question.cube],
                )
            turn_of = {row["seq"]: row["turn"] for row in rows}
            found[question.id] = Candidates(gathered, signals(gathered), turn_of)
    return found


def folds_of(questions: list[Question], count: int = FOLDS) -> list[list[Question]]:
    """`count` folds by question, each question type spread evenly over them."""
    folds: list[list[Question]] = [[] for _ in range(count)]
    for index, question in enumerate(sorted(questions, key=lambda q: (q.type, q.id))):
        folds[index % count].append(question)
    return folds


def objective(rows: list[dict[str, float]]) -> float:
    return sum(row[m] for row in rows for m in OBJECTIVE) / (len(rows) * len(OBJECTIVE))


def fit_blend(
    questions: list[Question], candidates: dict[str, Candidates], names: Sequence[str], l2: float
) -> np.ndarray:
    return fit([candidates[q.id].example(q, names)[1] for q in questions], l2)


def blend_metrics(
    questions: list[Question], candidates: dict[str, Candidates], names: Sequence[str], weights: np.ndarray
) -> dict[str, dict[str, float]]:
    return {q.id: question_metrics(q, candidates[q.id].blended(q, names, weights)) for q in questions}


def choose_blend(
    questions: list[Question], candidates: dict[str, Candidates]
) -> tuple[Sequence[str], float, np.ndarray]:
    """The signal set and regularisation with the best inner cross-validated objective on `questions`,
    fitted on all of them. A set with more signals must beat the base by more than one question's one
    metric (1 / (questions × metrics)): less is noise, and every signal added costs search time."""

    def inner(choice: tuple[Sequence[str], float]) -> float:
        names, l2 = choice
        rows: list[dict[str, float]] = []
        for fold in folds_of(questions, FOLDS - 1):
            held = {q.id for q in fold}
            weights = fit_blend([q for q in questions if q.id not in held], candidates, names, l2)
            rows += blend_metrics(fold, candidates, names, weights).values()
        return objective(rows)

    scored = {choice: inner(choice) for choice in itertools.product(SIGNAL_SETS, L2_GRID)}
    noise = 1 / (len(questions) * len(OBJECTIVE))
    best = max(scored, key=scored.__getitem__)
    base = max(((BASE_SIGNALS, l2) for l2 in L2_GRID), key=scored.__getitem__)
    names, l2 = best if scored[best] > scored[base] + noise else base
    return names, l2, fit_blend(questions, candidates, names, l2)


def rrf_table(
    questions: list[Question], candidates: dict[str, Candidates]
) -> tuple[list[dict[str, float]], list[dict[str, dict[str, float]]]]:
    """The weighted-RRF grid, and per weighting every question's metrics."""
    grid = [dict(zip(RRF_GRID, values, strict=True)) for values in itertools.product(*RRF_GRID.values())]
    table = []
    for weights in grid:
        config = SearchConfig(fusion="rrf", rrf=RankWeights(**weights))
        per_question = {}
        for q in questions:
            found = candidates[q.id]
            ranked_turns = [found.turn_of[seq] for seq, _ in fuse(found.gathered, config).ranked[:DEPTH]]
            per_question[q.id] = question_metrics(q, ranked_turns)
        table.append(per_question)
    return grid, table


async def cross_validate(questions: list[Question]) -> str:
    candidates = await gather_candidates(questions)
    rows, held_out = [], {}
    for number, fold in enumerate(folds_of(questions), start=1):
        held = {q.id for q in fold}
        names, l2, weights = choose_blend([q for q in questions if q.id not in held], candidates)
        metrics = blend_metrics(fold, candidates, names, weights)
        held_out.update(metrics)
        rows.append(
            [
                f"blend, fold {number} ({len(fold)} q)",
                describe(names, l2, weights),
                *summary_cells(list(metrics.values())),
            ]
        )
    rows.append(
        ["blend, all folds held out", "(each fold's own choice)", *summary_cells(list(held_out.values()))]
    )
    names, l2, weights = choose_blend(questions, candidates)
    chosen = blend_metrics(questions, candidates, names, weights)
    rows.append(
        [
            f"blend fitted on all {len(questions)} (in-sample)",
            describe(names, l2, weights),
            *summary_cells(list(chosen.values())),
        ]
    )
    # The weighted reciprocal rank fusion, cross-validated alike over its grid, for comparison.
    grid, table = rrf_table(questions, candidates)
    rrf_held: dict[str, dict[str, float]] = {}
    for fold in folds_of(questions):
        held = {q.id for q in fold}
        train = [q.id for q in questions if q.id not in held]
        best = max(range(len(grid)), key=lambda i: objective([table[i][qid] for qid in train]))
        rrf_held.update((qid, table[best][qid]) for qid in held)
    rows.append(
        [
            "weighted RRF, all folds held out",
            f"best of {len(grid)} per fold",
            *summary_cells(list(rrf_held.values())),
        ]
    )
    return "\n".join(
        [
            f"Fusion chosen by {FOLDS}-fold cross-validation (folds by question, types spread evenly; "
            f"objective: mean of {', '.join(OBJECTIVE)}). The blend's signal set is chosen by an inner "
            f"{FOLDS - 1}-fold cross-validation on the training folds, its weights fitted by pairwise logistic "
            "regression (bench/blend_fit.py); metrics on each fold's held-out questions:",
            "",
            markdown(["fusion", "chosen signals and weights", *SUMMARY], rows),
        ]
    )


def summary_cells(rows: list[dict[str, float]]) -> list[str]:
    averaged = mean_rows(rows)
    return [f"{averaged[m]:.3f}" for m in SUMMARY]


def describe(names: Sequence[str], l2: float, weights: np.ndarray) -> str:
    chosen = ", ".join(f"{name} {value:.2f}" for name, value in zip(names, weights, strict=True))
    return f"{chosen} (L2 {l2:g})"


# -- search latency at scale, per configuration --------------------------------------------------------------


async def latency(sizes: list[int], searches: int, model: str, names: list[str], peak: PeakRSS) -> str:
    """Search p50/p99 over MCP with each configuration, at each size: generated memories grouped ten to a
    session (so the episode and context stages have neighbours to read), one daemon restarted per setting."""
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="memos-retrieval-latency-") as tmp:
        home = Path(tmp)
        corpus, texts, loaded = memories(max(sizes)), queries(searches), 0
        token = ""
        for size in sorted(sizes):
            port = free_port()
            daemon = start_daemon(write_config(home, port=port, model=model), home, port)
            try:
                token = token or daemon.add_agent("bench")
                async with mcp_client(daemon.url, token) as client:
                    await wait_for_model(client)
                    for start in range(loaded, size, 500):
                        items = [
                            {
                                "content": corpus[i],
                                "kind": "message",
                                "metadata": {"session": f"s{i // 10}", "turn": i % 10},
                            }
                            for i in range(start, min(size, start + 500))
                        ]
                        await call(client, "memory_add_batch", {"items": items})
                    loaded = size
                    print(f"  latency: {size} memories loaded", file=sys.stderr)
            finally:
                peak.record(daemon)
                stop_daemon(daemon)
            for name in names:
                mode, overrides = CONFIGURATIONS[name]
                daemon = start_daemon(
                    write_config(home, port=port, model=model, extra=search_settings(overrides)), home, port
                )
                try:
                    async with mcp_client(daemon.url, token) as client:
                        await wait_for_model(client)
                        timings = []
                        for text in texts:
                            started = time.perf_counter()
                            await call(client, "memory_search", {"query": text, "k": 10, "mode": mode})
                            timings.append(time.perf_counter() - started)
                finally:
                    peak.record(daemon)
                    stop_daemon(daemon)
                rows.append(
                    [
                        name,
                        str(size),
                        f"{percentile(timings, 50) * 1000:.1f}",
                        f"{percentile(timings, 99) * 1000:.1f}",
                    ]
                )
    return "\n".join(
        [
            f"Search latency over MCP (one agent, k = 10, {searches} generated questions, memories in sessions of 10):",
            "",
            markdown(["configuration", "memories", "search p50 ms", "search p99 ms"], rows),
        ]
    )


# -- the official MCP memory server on the same questions ---------------------------------------------------


async def peer_results(questions: list[Question]) -> list[SystemResult]:
    """The official server loaded with each haystack (one entity per turn) and asked through its own
    search_nodes: the whole question, and word by word as a model would retry."""
    whole, words = SystemResult("", {}, []), SystemResult("", {}, [])
    async with OfficialMemoryServer() as peer:
        print(f"  querying {peer.spec}", file=sys.stderr)
        whole.name, words.name = f"{peer.spec}: whole question", f"{peer.spec}: word by word"
        for question in questions:
            await peer.reset()
            await peer.load_turns([turn for turn in question.turns if turn.content.strip()])
            for result, search in ((whole, peer.search), (words, peer.search_keywords)):
                started = time.perf_counter()
                ranked_turns = await search(question.text, DEPTH)
                result.latencies.append(time.perf_counter() - started)
                result.per_question[question.id] = question_metrics(question, ranked_turns)
    return [whole, words]


def ratio_table(ours: SystemResult, peers: list[SystemResult]) -> str:
    """memos' default pipeline ÷ each peer, per metric (∞ where the peer found nothing)."""
    mine = mean_rows(list(ours.per_question.values()))
    rows = []
    for peer in peers:
        theirs = mean_rows(list(peer.per_question.values()))
        rows.append(
            [f"memos ÷ {peer.name}"]
            + [f"{mine[m] / theirs[m]:.1f}×" if theirs[m] else ("∞" if mine[m] else "–") for m in SUMMARY]
        )
    return "\n".join(
        [
            f"Side by side with the official MCP memory server (memos: {ours.name}), same questions, same SDK"
            " client, ratios of the mean metric:",
            "",
            markdown(["ratio", *SUMMARY], rows),
        ]
    )


# -- running and reporting ------------------------------------------------------------------------------------


@dataclass
class SystemResult:
    name: str
    per_question: dict[str, dict[str, float]]  # question id -> metrics
    latencies: list[float]


async def evaluate(
    name: str, questions: list[Question], rank: Callable[[Question], Awaitable[list[str]]]
) -> SystemResult:
    per_question, latencies = {}, []
    for question in questions:
        started = time.perf_counter()
        ranked = await rank(question)
        latencies.append(time.perf_counter() - started)
        per_question[question.id] = question_metrics(question, ranked)
    return SystemResult(name, per_question, latencies)


SUMMARY = ["turn any@1", "turn any@5", "turn any@10", "turn all@5", "turn all@10", "turn ndcg@5",
           "turn ndcg@10", "session any@1", "session any@5", "session any@10", "session all@10",
           "session ndcg@10"]  # fmt: skip


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """report.table for rows already formatted as text."""
    return table([dict(zip(header, row, strict=True)) for row in rows])


def summary_table(results: list[SystemResult]) -> str:
    rows = []
    for result in results:
        overall = mean_rows(list(result.per_question.values()))
        rows.append(
            [
                result.name,
                *(f"{overall[m]:.3f}" for m in SUMMARY),
                f"{percentile(result.latencies, 50) * 1000:.0f}",
            ]
        )
    return markdown(["system", *SUMMARY, "query p50 ms"], rows)


def per_type_table(results: list[SystemResult], questions: list[Question], level: str) -> str:
    types = sorted({q.type for q in questions})
    columns = [f"{level} {m}" for m in METRICS]
    rows = []
    for result in results:
        for qtype in types:
            chosen = [result.per_question[q.id] for q in questions if q.type == qtype]
            averaged = mean_rows(chosen)
            rows.append([result.name, f"{qtype} ({len(chosen)})", *(f"{averaged[c]:.2f}" for c in columns)])
    return markdown(["system", "question type", *METRICS], rows)


def plot(results: list[SystemResult], questions: list[Question], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install -e '.[bench]' for matplotlib)", file=sys.stderr)
        return
    shown = {"BM25 only", "vector only", "plain hybrid (RRF, k = 60)", DEFAULT}
    results = [r for r in results if r.name in shown or "word by word" in r.name] or results
    types = sorted({q.type for q in questions})
    figure, axes = plt.subplots(1, 3, figsize=(16, 5), sharey=True)
    for axis, metric in zip(axes, ("turn any@10", "turn all@10", "turn ndcg@10"), strict=True):
        width = 0.8 / len(results)
        for offset, result in enumerate(results):
            values = [
                mean_rows([result.per_question[q.id] for q in questions if q.type == t])[metric]
                for t in types
            ]
            axis.bar([i + offset * width for i in range(len(types))], values, width, label=result.name)
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(types))], types, rotation=25, ha="right")
        axis.set_title(metric)
        axis.set_ylim(0, 1)
    figure.suptitle("LongMemEval-S dev60 by question type")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(results), fontsize="small")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=110)
    print(f"plot: {path}", file=sys.stderr)


DEFAULT = "+ context + episode = default"
Settings = dict[str, Any]  # [search] settings: scalars, and the "blend" or "rrf" table
PLAIN_RRF = {
    "k": 60.0,
    "lexical": 1.0,
    "vector": 1.0,
    "exact": 0.0,
    "context": 0.0,
    "episode": 0.0,
    "time": 0.0,
}
BLEND = msgspec.structs.asdict(BlendWeights())  # what cross-validation chose: memos.toml's defaults
# The previous default (fitted on LongMemEval dev60 alone): lexical, vector, time and speaker.
PREVIOUS = {
    **BLEND,
    "lexical": 6.6,
    "vector": 12.49,
    "time": 5.95,
    "speaker": 5.71,
    "context": 0.0,
    "episode": 0.0,
}
LEXICAL_VECTOR = {**PREVIOUS, "time": 0.0, "speaker": 0.0, "exact": 0.0}
# A stage cross-validation left off, added to the default at about the time and speaker weights.
EXTRA_WEIGHT = 6.0


def rrf(**weights: float) -> Settings:
    return {"fusion": "rrf", "rrf": {**PLAIN_RRF, **weights}}


def blend(**weights: float) -> Settings:
    return {"fusion": "blend", "blend": {**BLEND, **weights}}


# name -> (memory_search mode, [search] settings). The plain baselines; then each change in turn up to the
# default pipeline; then each stage that cross-validation left off added to it, and each signal removed.
CONFIGURATIONS: dict[str, tuple[str, Settings]] = {
    "BM25 only": ("lexical", rrf(vector=0.0)),
    "vector only": ("vector", rrf(lexical=0.0)),
    "plain hybrid (RRF, k = 60)": ("hybrid", rrf()),
    "RRF k = 15 + time": ("hybrid", rrf(k=15.0, time=1.0)),
    "blend: lexical + vector": ("hybrid", {"fusion": "blend", "blend": LEXICAL_VECTOR}),
    "+ time": ("hybrid", {"fusion": "blend", "blend": {**PREVIOUS, "speaker": 0.0}}),
    "+ speaker (previous default)": ("hybrid", {"fusion": "blend", "blend": PREVIOUS}),
    DEFAULT: ("hybrid", blend()),
    "default - episode spread": ("hybrid", {**blend(), "episode_spread": 0.0}),
    "default + exact names/numbers": ("hybrid", blend(exact=EXTRA_WEIGHT)),
    "default - context": ("hybrid", blend(context=0.0)),
    "default - episode": ("hybrid", blend(episode=0.0)),
    "default + entities": ("hybrid", blend(entity=EXTRA_WEIGHT)),
    "default + entity graph": ("hybrid", blend(graph=EXTRA_WEIGHT)),
    "default - lexical": ("hybrid", blend(lexical=0.0)),
    "default + vector": ("hybrid", blend(vector=EXTRA_WEIGHT)),
    "default - time": ("hybrid", blend(time=0.0)),
    "default - speaker": ("hybrid", blend(speaker=0.0)),
}


def search_settings(settings: Settings) -> str:
    """A [search] table with these settings (and its [search.blend] or [search.rrf])."""
    lines = ["[search]"]
    tables = []
    for name, value in settings.items():
        if isinstance(value, dict):
            tables += [f"[search.{name}]", *(f"{key} = {number}" for key, number in value.items())]
        else:
            lines.append(f"{name} = {json.dumps(value)}")
    return "\n".join(lines + tables) + "\n"


async def run(args: argparse.Namespace) -> str:
    questions = load_questions()
    memos = Memos(args.model, args.fresh, precision=args.embedder_precision)
    if not memos.loaded():
        await memos.load([haystack(q) for q in interleaved(questions)])
    out = [
        f"Machine: {machine()}",
        f"Dataset: {DATASET.name}: {len(questions)} questions (abstention skipped), "
        f"{sum(len(q.turns) for q in questions)} turns; every turn is one memory.",
        "",
    ]
    if args.cv:
        print("  cross-validating the fusion weights", file=sys.stderr)
        out += [await cross_validate(questions), ""]
    results = []
    try:
        for name in args.configurations:
            mode, overrides = CONFIGURATIONS[name]
            daemon = memos.start(search_settings({**overrides, **args.search}))
            async with mcp_client(daemon.url, memos.token) as client:
                await wait_for_model(client)
            print(f"  querying {name}", file=sys.stderr)
            results.append(await evaluate(name, questions, await memos.ranker({"mode": mode})))
    finally:
        memos.stop()
    if args.peer:
        ours = next((r for r in results if r.name == DEFAULT), results[-1])
        peers = await peer_results(questions)
        results += peers
        out += [ratio_table(ours, peers), ""]
    out += [
        "Each configuration through memosd's `memory_search` (k = 100, reference_time = the question's date):",
        "",
        summary_table(results),
        "",
        "Turn level by question type:",
        "",
        per_type_table(results, questions, "turn"),
        "",
        "Session level by question type:",
        "",
        per_type_table(results, questions, "session"),
    ]
    if args.sizes:
        out += ["", await latency(args.sizes, args.searches, args.model, args.configurations, memos.peak)]
    out += ["", memos.peak.summary(sum(len(haystack(q).items) for q in questions))]
    plot(results, questions, RESULTS / "retrieval.png")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configurations",
        nargs="+",
        default=list(CONFIGURATIONS),
        choices=list(CONFIGURATIONS),
        metavar="NAME",
    )
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[10_000, 100_000], help="latency sizes; none: skip"
    )
    parser.add_argument("--searches", type=int, default=100, help="searches per configuration and size")
    parser.add_argument(
        "--no-cv", dest="cv", action="store_false", help="skip the cross-validation of weights"
    )
    parser.add_argument(
        "--no-peer", dest="peer", action="store_false", help="skip the official memory server"
    )
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="local model dir")
    parser.add_argument("--fresh", action="store_true", help="reload the dataset even if a kept copy matches")
    parser.add_argument("--vector-precision", choices=["int8", "float32"], help="[search] vector_precision")
    parser.add_argument("--embedder-precision", choices=["int8", "float32"], help="[embedder] precision")
    args = parser.parse_args()
    args.search = {"vector_precision": args.vector_precision} if args.vector_precision else {}
    out = anyio.run(run, args)
    print(out)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrieval.md").write_text(out, encoding="utf-8")


if __name__ == "__main__":
    main()
