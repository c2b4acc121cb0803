"""Load N memories into a real memosd over MCP and measure add throughput, search/get latency and memory.

    python bench/load.py                       # N = 10k then 100k (about 10 minutes on 2 cores)
    python bench/load.py --sizes 1000 --searches 50

Prints a markdown table (and writes it to bench/results/load.md). Each size is reached by loading more into
the same daemon, so the 100k row includes the first 10k.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import memories, queries
from tests.conftest import free_port, mcp_client, start_daemon, stop_daemon, write_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2-onnx"
BATCH = 500


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_kb / 1024 / 1024:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def rss_mib(pid: int) -> tuple[float, float]:
    """Current and peak resident memory of a process, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def timed(client: Any, tool: str, arguments: dict[str, Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = await client.call_tool(tool, arguments)
    elapsed = time.perf_counter() - start
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content[0].text}")
    return elapsed, result.structured_content


async def search_latencies(url: str, token: str, texts: list[str], concurrency: int) -> list[float]:
    latencies: list[float] = []

    async def worker(share: list[str]) -> None:
        async with mcp_client(url, token) as client:
            for text in share:
                latencies.append((await timed(client, "memory_search", {"query": text, "k": 10}))[0])

    async with anyio.create_task_group() as tg:
        for i in range(concurrency):
            tg.start_soon(worker, texts[i::concurrency])
    return latencies


async def run(sizes: list[int], searches: int, model: str, concurrency: list[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="memos-bench-") as tmp:
        home = Path(tmp)
        port = free_port()
        config = write_config(home, port=port, model=model)
        started = time.perf_counter()
        daemon = start_daemon(config, home, port)
        ready_s = time.perf_counter() - started
        try:
            token = daemon.add_agent("bench")
            corpus = memories(max(sizes))
            loaded = 0
            async with mcp_client(daemon.url, token) as client:
                # Wait until the model is loaded, so the load measures embedding too.
                while (await timed(client, "memory_search", {"query": "warm up"}))[1]["mode"] != "hybrid":  # noqa: ASYNC110 - polls the daemon
                    await anyio.sleep(0.2)
                for size in sizes:
                    batch_start = time.perf_counter()
                    to_load = corpus[loaded:size]
                    for start in range(0, len(to_load), BATCH):
                        items = [{"content": text, "kind": "fact"} for text in to_load[start : start + BATCH]]
                        await timed(client, "memory_add_batch", {"items": items})
                    batch_rate = len(to_load) / (time.perf_counter() - batch_start)
                    loaded = size
                    singles = [
                        (
                            await timed(
                                client, "memory_add", {"content": f"single add {size}-{i}: {corpus[i]}"}
                            )
                        )[0]
                        for i in range(100)
                    ]
                    await timed(client, "cube_configure", {"cube": "@bench", "report_similar": False})
                    unchecked = [
                        (
                            await timed(
                                client, "memory_add", {"content": f"plain add {size}-{i}: {corpus[i]}"}
                            )
                        )[0]
                        for i in range(100)
                    ]
                    await timed(client, "cube_configure", {"cube": "@bench", "report_similar": True})
                    ids = [
                        hit["id"]
                        for hit in (await timed(client, "memory_search", {"query": "deploy"}))[1]["results"]
                    ]
                    gets = [
                        (await timed(client, "memory_get", {"id": ids[i % len(ids)]}))[0] for i in range(200)
                    ]
                    row: dict[str, Any] = {
                        "memories": size,
                        "batch add/s": batch_rate,
                        "single add p50 ms": statistics.median(singles) * 1000,
                        "add p50 ms, no similarity check": statistics.median(unchecked) * 1000,
                        "single add/s": 1 / statistics.mean(singles),
                        "get p50 ms": statistics.median(gets) * 1000,
                    }
                    texts = queries(searches)
                    for agents in concurrency:
                        lat = await search_latencies(daemon.url, token, texts, agents)
                        row[f"search p50 ms ({agents} agents)"] = percentile(lat, 50) * 1000
                        row[f"search p99 ms ({agents} agents)"] = percentile(lat, 99) * 1000
                    rss, peak = rss_mib(daemon.process.pid)
                    row["RSS MiB"] = rss
                    row["peak RSS MiB"] = peak
                    db = home / "data" / "memos.db"
                    row["db MiB"] = sum(p.stat().st_size for p in db.parent.glob("memos.db*")) / 2**20
                    row["startup-to-ready s"] = ready_s
                    rows.append(row)
                    print(f"  measured {size}: {row}", file=sys.stderr, flush=True)
        finally:
            stop_daemon(daemon)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(f"{row[c]:.1f}" if isinstance(row[c], float) else str(row[c]) for c in columns)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="local model dir, or none")
    args = parser.parse_args()
    rows = anyio.run(run, sorted(args.sizes), args.searches, args.model, args.concurrency)
    out = f"Machine: {machine()}\n\n{table(rows)}\n"
    print(out)
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "load.md").write_text(out, encoding="utf-8")


if __name__ == "__main__":
    main()
