"""The CPU one search spends in each of its stages, in process, and a record of its exact results (issue 17).

    python bench/search_stages.py DIR                        # stage table over 200 corpus questions
    python bench/search_stages.py DIR --record golden.json   # every hit of the fixed query set, kept
    python bench/search_stages.py DIR --check golden.json    # the same queries: must give the same hits

DIR is a copy of a loaded database directory (bench/seed.py's `many-matches-100000`, or bench/locomo.py's
`locomo-dev5`); its memos.toml is replaced by one with today's defaults and the real model. The services
are opened in this process (no MCP), the vector cache and the in-memory BM25 index filled, then:

- the stage table: each stage's process CPU (every thread: aiosqlite's, numpy's, the model's) per search,
  by `time.process_time` around the stage's function, and SQL statements per search. Searches run one at a
  time, so the process's CPU during a stage is that stage's. Stages nest as named (`fusion` holds
  `signals`); "rest" is the search's CPU outside every stage named.
- `--record`/`--check`: the corpus questions and variants with filters, several phrasings, time expressions,
  context windows, k = 50 and each mode (on LoCoMo: its questions in their conversation's cube), with "now"
  fixed so recency and expiry do not move; every result's hits (ids, scores, every match field) compared.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.client import DEFAULT_MODEL
from bench.corpus import note_queries
from bench.report import load_average
from daemon import SearchQuery, agent_named, load_config, open_services

NOW = "2026-12-05T12:00:00.000000Z"  # "now" of --record/--check: recency and expiry stay put

# (label, module, attribute, class or None): the stages timed, where they exist in this version.
STAGES: list[tuple[str, str, str, str | None]] = [
    ("search (whole)", "daemon.search", "_search", "Search"),
    ("query embedding (_embed)", "daemon.search", "_embed", "Search"),
    ("scope", "daemon.memories", "scope", "Memories"),
    ("gather (all below)", "daemon.search", "_gather", "Search"),
    (
        "candidate lists: KNN+BM25 (+ the embedding before 303f416)",
        "daemon.search",
        "_candidate_lists",
        "Search",
    ),
    ("  lexical (_bm25)", "daemon.search", "_bm25", "Search"),
    ("    BM25 in memory (_ranked, thread)", "daemon.lexical_index", "_ranked", "LexicalIndex"),
    ("  nearest, filtered (_nearest)", "daemon.search", "_nearest", "Search"),
    ("    KNN (VectorCache.nearest, thread)", "daemon.vector_cache", "nearest", "VectorCache"),
    ("    re-scored from the store (int8)", "daemon.vectors", "_stored_similarities", "VectorIndex"),
    ("place (episodes)", "daemon.search", "place", None),
    ("similarities of candidates", "daemon.vectors", "similarities", "VectorIndex"),
    ("context_scores", "daemon.search", "context_scores", None),
    ("episode_scores", "daemon.search", "episode_scores", None),
    ("pool()", "daemon.fusion", "pool", "Gathered"),
    ("fusion (fuse)", "daemon.search", "fuse", None),
    ("  signals", "daemon.fusion", "signals", None),
    ("  blend", "daemon.fusion", "blend", None),
    ("recency and importance", "daemon.search", "_weigh_time_and_importance", "Search"),
    ("hits", "daemon.search", "_hits", "Search"),
]


class Stages:
    """Process CPU per stage, summed over the searches; statements counted."""

    def __init__(self) -> None:
        self.cpu: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.statements = 0

    def install(self) -> None:
        import importlib

        for label, module_name, attribute, owner in STAGES:
            module = importlib.import_module(module_name)
            target = getattr(module, owner) if owner else module
            function = inspect.getattr_static(target, attribute, None)
            if function is None:
                continue
            wrapped = self._wrapped(
                label, function.__func__ if isinstance(function, staticmethod) else function
            )
            setattr(
                target, attribute, staticmethod(wrapped) if isinstance(function, staticmethod) else wrapped
            )
        from daemon import store

        for name in ("rows", "row", "value", "column", "columns", "packed_columns", "execute"):
            if hasattr(store.Connection, name):
                setattr(store.Connection, name, self._counted(getattr(store.Connection, name)))

    def _wrapped(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.thread_time if label.endswith("thread)") else time.process_time
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = clock()
                try:
                    return await function(*args, **kwargs)
                finally:
                    self.cpu[label] += clock() - started
                    self.calls[label] += 1

            return timed_async

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                self.cpu[label] += clock() - started
                self.calls[label] += 1

        return timed

    def _counted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.statements += 1
            return await method(*args, **kwargs)

        return counted

    def table(self, searches: int) -> str:
        lines = ["| stage | CPU ms / search | calls / search |", "|---|---|---|"]
        for label, *_ in STAGES:
            if label in self.calls:
                cpu = self.cpu[label] / searches * 1000
                lines.append(f"| {label} | {cpu:.2f} | {self.calls[label] / searches:.1f} |")
        named = (
            "query embedding (_embed)", "scope", "gather (all below)", "fusion (fuse)", "recency and importance", "hits"
        )  # fmt: skip
        rest = self.cpu["search (whole)"] - sum(self.cpu[label] for label in named)
        lines.append(f"| rest of _search | {rest / searches * 1000:.2f} | |")
        lines.append(f"| SQL statements | | {self.statements / searches:.1f} |")
        return "\n".join(lines)


def config_for(home: Path, settings: list[str]) -> Any:
    """Today's defaults with the real model on DIR's database (plus `--setting` lines for [search])."""
    search = "\n".join(["[search]", *settings]) if settings else ""
    path = home / "memos.toml"
    path.write_text(
        f'[server]\nport = 1\n[storage]\npath = "data/memos.db"\n[embedder]\nmodel_path = "{DEFAULT_MODEL}"\n'
        f"{search}\n",
        encoding="utf-8",
    )
    return load_config(path, environ={"HOME": str(home)})


def corpus_queries(count: int) -> list[dict[str, Any]]:
    """The many-matches corpus's questions, and variants of them that take every path of a search."""
    texts = note_queries(count + 200)
    asked: list[dict[str, Any]] = [{"query": text} for text in texts[:count]]
    extra = iter(texts[count:])
    variants: list[dict[str, Any]] = [
        *({"kinds": ["fact"]} for _ in range(15)),
        *({"kinds": ["note"]} for _ in range(5)),
        *({"tags": ["nothing-has-it"]} for _ in range(5)),
        *({"source_agent": "bench"} for _ in range(10)),
        *({"since": "2026-12-01T00:00:00Z", "until": "2026-12-31T00:00:00Z"} for _ in range(10)),
        *({"since": "2027-01-01T00:00:00Z"} for _ in range(5)),
        *({"as_of": "2026-12-03T00:00:00Z"} for _ in range(10)),
        *({"include_superseded": True} for _ in range(10)),
        *({"context_window": 2} for _ in range(10)),
        *({"k": 50} for _ in range(10)),
        *({"mode": "lexical"} for _ in range(10)),
        *({"mode": "vector"} for _ in range(10)),
    ]
    for variant in variants:
        asked.append({"query": next(extra), **variant})
    for _ in range(20):
        asked.append({"query": next(extra), "queries": [next(extra), next(extra)]})
    for phrase in ("last week", "in December", "yesterday", "this month", "in 2026") * 4:
        asked.append({"query": f"{next(extra)} {phrase}", "reference_time": "2026-12-05T10:00:00Z"})
    return asked


def locomo_queries(count: int) -> list[dict[str, Any]]:
    """LoCoMo dev5's questions in their conversation's cube, and variants of them."""
    from bench.locomo import load_questions

    questions = load_questions()
    step = max(1, len(questions) // count)
    chosen = questions[::step][:count]
    asked: list[dict[str, Any]] = [
        {"query": q.text, "cubes": [q.cube], "reference_time": q.date} for q in chosen
    ]
    others = questions[1::step]
    variants: list[dict[str, Any]] = [
        *({"context_window": 2} for _ in range(20)),
        *({"kinds": ["message"]} for _ in range(10)),
        *({"k": 50} for _ in range(10)),
        *({"mode": "lexical"} for _ in range(10)),
        *({"include_superseded": True} for _ in range(10)),
        *({"cubes": None} for _ in range(10)),
    ]
    for q, variant in zip(others, variants, strict=False):
        asked.append({"query": q.text, "cubes": [q.cube], "reference_time": q.date, **variant})
    for a, b, c in zip(others[60::3], others[61::3], others[62::3], strict=False):
        if a.cube == b.cube == c.cube and len(asked) < count + 100:
            asked.append({"query": a.text, "queries": [b.text, c.text], "cubes": [a.cube]})
    return asked


def profiler_modules() -> tuple[Any, Any]:
    """cProfile and pstats; bench/profile.py would stand in for the standard `profile` they import."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]
    import cProfile
    import pstats

    return cProfile, pstats


async def timing(args: argparse.Namespace) -> None:
    cProfile, pstats = profiler_modules()
    stages = Stages()
    stages.install()
    config = config_for(args.dir, args.setting)
    texts = note_queries(args.searches + 10)
    async with open_services(config) as core:
        await ready(core)
        agent = agent_named("bench")
        for text in texts[:10]:  # warm the caches
            await core.search.search(agent, SearchQuery(query=text, k=10))
        stages.cpu.clear()
        stages.calls.clear()
        stages.statements = 0
        profiler = cProfile.Profile() if args.cprofile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        for text in texts[10:]:
            await core.search.search(agent, SearchQuery(query=text, k=10))
        if profiler is not None:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = args.searches
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.cprofile)
    print(stages.table(n))
    print(
        f"\n{n} searches: process CPU {cpu / n * 1000:.2f} ms/search, wall {wall / n * 1000:.2f} ms/search,"
        f" load average {load_average()}"
    )


async def ready(core: Any) -> None:
    await core.vectors.attached.wait()
    await core.entities.idle.wait()
    if core.search.lexical_index is not None:
        await core.search.lexical_index.wait_ready()


async def results(args: argparse.Namespace) -> None:
    from daemon import filters, search

    search.now_iso = filters.now_iso = lambda: NOW  # type: ignore[attr-defined]
    config = config_for(args.dir, args.setting)
    async with open_services(config) as core:
        await ready(core)
        cubes = [ref.name for ref in await readable(core)]
        asked = (
            locomo_queries(args.searches)
            if any(c.startswith("locomo-") for c in cubes)
            else corpus_queries(args.searches)
        )
        agent = agent_named("bench")
        found = []
        for query in asked:
            answer = await core.search.search(agent, msgspec.convert(query, SearchQuery))
            found.append({"asked": query, "answer": msgspec.to_builtins(answer)})
    if args.record:
        args.record.write_text(json.dumps(found, indent=0), encoding="utf-8")
        hits = sum(len(item["answer"]["results"]) for item in found)
        print(f"recorded {len(found)} searches, {hits} hits")
        return
    kept = json.loads(args.check.read_text(encoding="utf-8"))
    found = json.loads(json.dumps(found))
    different = [i for i, (a, b) in enumerate(zip(kept, found, strict=True)) if a != b]
    print(f"checked {len(found)} searches: {len(different)} differ")
    for i in different[:5]:
        print(json.dumps(kept[i]["asked"]), "\n  kept:", first_difference(kept[i], found[i]))
    if different:
        raise SystemExit(1)


def first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return first_difference(a.get(key), b.get(key), f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return first_difference(x, y, f"{path}[{i}]")
    return f"{path}: {json.dumps(a)[:200]} != {json.dumps(b)[:200]}"


async def readable(core: Any) -> list[Any]:
    async with core.store.read() as conn:
        refs: list[Any] = await core.memories.scope(conn, agent_named("bench"), None)
        return refs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dir", type=Path, help="a copy of a loaded database directory")
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--cprofile", type=int, default=0, help="print the event loop's top N functions")
    parser.add_argument("--setting", action="append", default=[], help="a [search] line (repeatable)")
    kept = parser.add_mutually_exclusive_group()
    kept.add_argument("--record", type=Path, help="record the fixed query set's results here")
    kept.add_argument("--check", type=Path, help="compare the fixed query set's results with these")
    arguments = parser.parse_args()
    arguments.dir = arguments.dir.resolve()
    anyio.run(results if arguments.record or arguments.check else timing, arguments)
