"""Handoff-to-pack-ready latency: A hands tasks to B over MCP while other agents write and search; B is
notified (subscriptions/listen) when its context pack is ready.

    python bench/handoff.py                     # 10k then 100k memories in the shared cube (~12 minutes)
    python bench/handoff.py --sizes 2000 --handoffs 10

Prints a markdown table (also written to bench/results/handoff.md, with a plot in bench/results/handoff.png).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp.shared.subscriptions import ResourceUpdated

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.client import DEFAULT_MODEL, timed
from bench.corpus import memories, queries
from bench.plot import Panel, bar_panels
from bench.report import RESULTS, machine, percentile, table
from tests.conftest import free_port, mcp_client, start_daemon, stop_daemon, write_config

BATCH = 500


async def load(client: Any, texts: list[str]) -> None:
    for start in range(0, len(texts), BATCH):
        items = [{"content": t, "kind": "fact"} for t in texts[start : start + BATCH]]
        await timed(client, "memory_add_batch", {"cube": "team-bench", "items": items})


async def background(url: str, tokens: dict[str, str], stop: anyio.Event, counts: dict[str, int]) -> None:
    """Two writers and two searchers, as fast as they go, until `stop`."""

    async def writer(name: str) -> None:
        async with mcp_client(url, tokens[name]) as client:
            i = 0
            while not stop.is_set():
                await timed(
                    client,
                    "memory_add",
                    {"cube": "team-bench", "content": f"{name} note {i}: {memories(1, i)[0]}"},
                )
                counts["writes"] += 1
                i += 1

    async def searcher(name: str) -> None:
        async with mcp_client(url, tokens[name]) as client:
            for text in queries(100_000):
                if stop.is_set():
                    return
                await timed(client, "memory_search", {"query": text})
                counts["searches"] += 1

    async with anyio.create_task_group() as tg:
        for name in ("w1", "w2"):
            tg.start_soon(writer, name)
        for name in ("s1", "s2"):
            tg.start_soon(searcher, name)


async def run(sizes: list[int], handoffs: int, model: str) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="memos-handoff-") as tmp:
        home = Path(tmp)
        port = free_port()
        daemon = start_daemon(write_config(home, port=port, model=model), home, port)
        try:
            tokens = {name: daemon.add_agent(name) for name in ("a", "b", "w1", "w2", "s1", "s2")}
            daemon.relate("bench", *tokens)  # so a can name the others
            corpus, loaded = memories(max(sizes)), 0
            async with mcp_client(daemon.url, tokens["a"]) as a, mcp_client(daemon.url, tokens["b"]) as b:
                await timed(a, "cube_create", {"name": "team-bench"})
                for grantee, permission in (
                    ("b", "read"),
                    ("w1", "write"),
                    ("w2", "write"),
                    ("s1", "read"),
                    ("s2", "read"),
                ):
                    await timed(
                        a, "cube_share", {"cube": "team-bench", "grantee": grantee, "permission": permission}
                    )
                uri = "memos://agents/b/context"
                for size in sizes:
                    await load(a, corpus[loaded:size])
                    loaded = size
                    latencies: list[float] = []
                    stop, counts = anyio.Event(), {"writes": 0, "searches": 0}
                    async with (
                        b.listen(resource_subscriptions=[uri]) as events,
                        anyio.create_task_group() as tg,
                    ):
                        tg.start_soon(background, daemon.url, tokens, stop, counts)
                        await anyio.sleep(1.0)
                        started = time.perf_counter()
                        for question in queries(handoffs, seed=size):
                            t0 = time.perf_counter()
                            await timed(
                                a,
                                "task_handoff",
                                {"to_agent": "b", "title": question, "cubes": ["team-bench"]},
                            )
                            async for event in events:
                                if isinstance(event, ResourceUpdated) and event.uri == uri:
                                    break
                            latencies.append(time.perf_counter() - t0)
                            task_id = (await timed(b, "task_list", {"role": "to", "status": "pending"}))[1][
                                "tasks"
                            ][0]["id"]
                            await timed(b, "task_accept", {"task_id": task_id})
                            await timed(b, "task_update", {"task_id": task_id, "status": "done"})
                        elapsed = time.perf_counter() - started
                        stop.set()
                    rows.append(
                        {
                            "memories": size,
                            "handoffs": handoffs,
                            "handoff-to-pack-ready p50 ms": percentile(latencies, 50) * 1000,
                            "p99 ms": percentile(latencies, 99) * 1000,
                            "background writes/s": counts["writes"] / elapsed,
                            "background searches/s": counts["searches"] / elapsed,
                        }
                    )
                    print(f"  measured {size}: {rows[-1]}", file=sys.stderr, flush=True)
        finally:
            stop_daemon(daemon)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--handoffs", type=int, default=50)
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    args = parser.parse_args()
    rows = anyio.run(run, sorted(args.sizes), args.handoffs, args.model)
    out = f"Machine: {machine()}\n\n{table(rows)}\n"
    print(out)
    results = RESULTS
    results.mkdir(exist_ok=True)
    (results / "handoff.md").write_text(out, encoding="utf-8")
    panels = [
        Panel("handoff-to-pack-ready p50 ms", {"memos": "handoff-to-pack-ready p50 ms"}),
        Panel("handoff-to-pack-ready p99 ms", {"memos": "p99 ms"}),
        Panel("background writes/s", {"memos": "background writes/s"}),
        Panel("background searches/s", {"memos": "background searches/s"}),
    ]
    bar_panels(
        results / "handoff.png", "bench/handoff.py: handoff to context pack ready", {"memos": rows}, panels
    )


if __name__ == "__main__":
    main()
