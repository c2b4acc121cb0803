"""Load N memories into a real memosd over MCP and measure add throughput, search/get latency and memory;
then the same workload against the official MCP memory server (bench/peer_load.py), side by side.

    python bench/load.py                       # N = 10k then 100k (about 13 minutes on 2 cores, peer at 10k)
    python bench/load.py --sizes 1000 --searches 50 --no-peer

Prints markdown tables for memos, the official server and their ratios (also written to
bench/results/load.md, with a plot in bench/results/load.png). Each size is reached by loading more into the
same daemon, so the 100k row includes the first 10k.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.client import DEFAULT_MODEL, timed, wait_for_model
from bench.corpus import memories, queries
from bench.peer import PeerUnavailable
from bench.peer_load import PeerRun, estimate_note, run_peer
from bench.plot import Panel, bar_panels
from bench.report import RESULTS, Ratio, Row, load_average, machine, percentile, ratio_rows, rss_mib, table
from tests.conftest import free_port, mcp_client, start_daemon, stop_daemon, write_config

BATCH = 500


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


async def run(sizes: list[int], searches: int, model: str, concurrency: list[int]) -> list[Row]:
    rows: list[Row] = []
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
                await wait_for_model(client)  # so the load measures embedding too
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
                    row: Row = {
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


def ratios(concurrency: list[int]) -> list[Ratio]:
    searches = [
        Ratio(f"search {q} ms ({n})", f"search {q} ms ({n} agents)", f"search {q} ms ({n} clients)", False)
        for n in concurrency
        for q in ("p50", "p99")
    ]
    return [
        Ratio("batch add/s", "batch add/s", "batch add/s", True),
        Ratio("single add p50 ms", "single add p50 ms", "single add p50 ms", False),
        Ratio("single add/s", "single add/s", "single add/s", True),
        Ratio("get p50 ms", "get p50 ms", "get p50 ms", False),
        *searches,
        Ratio("RSS MiB", "RSS MiB", "RSS MiB", False),
        Ratio("on-disk MiB", "db MiB", "file MiB", False),
        Ratio("startup-to-ready s", "startup-to-ready s", "startup-to-ready s", False),
    ]


def plot(path: Path, ours: list[Row], peer: PeerRun | None, concurrency: list[int]) -> None:
    systems = {"memos": ours, **({"official memory server": peer.rows} if peer else {})}

    def both(ours_column: str, peer_column: str | None = None) -> dict[str, str]:
        return {"memos": ours_column, "official memory server": peer_column or ours_column}

    panels = [
        Panel("batch add/s", both("batch add/s"), log=True),
        Panel("single add p50 ms", both("single add p50 ms"), log=True),
        Panel("get p50 ms", both("get p50 ms"), log=True),
        *(
            Panel(
                f"search p50 ms, {n} concurrent",
                both(f"search p50 ms ({n} agents)", f"search p50 ms ({n} clients)"),
                log=True,
            )
            for n in concurrency
        ),
        Panel("RSS MiB", both("RSS MiB")),
        Panel("on-disk MiB", both("db MiB", "file MiB")),
        Panel("startup-to-ready s", both("startup-to-ready s")),
    ]
    bar_panels(path, "bench/load.py: memos and the official MCP memory server", systems, panels)


def report(
    ours: list[Row], peer: PeerRun | None, skipped: list[str], concurrency: list[int], loads: str
) -> str:
    parts = [
        f"Machine: {machine()}",
        f"Load average (1, 5, 15 min) before each part: {loads}",
        "",
        table(ours),
    ]
    if peer:
        parts += [
            "",
            f"Official MCP memory server: @modelcontextprotocol/server-memory@{peer.version}, node {peer.node}",
            "",
            table(peer.rows),
            "",
            *(f"- {note}" for note in [*peer.notes, *skipped]),
            "",
            "Ratios: official server ÷ memos for latency, memory, size and startup; memos ÷ official server for "
            "throughput. Above 1 means memos is faster or smaller.",
            "",
            table(ratio_rows(ours, peer.rows, ratios(concurrency))),
        ]
    elif skipped:
        parts += ["", *(f"- {note}" for note in skipped)]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="local model dir, or none")
    parser.add_argument("--no-peer", action="store_true", help="skip the official MCP memory server")
    parser.add_argument(
        "--peer-max-size",
        type=int,
        default=10_000,
        help="largest size run against the official server (every call of which reads and rewrites its whole file)",
    )
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    loads = [load_average()]
    rows = anyio.run(run, sizes, args.searches, args.model, args.concurrency)
    peer: PeerRun | None = None
    skipped: list[str] = []
    if not args.no_peer:
        peer_sizes = [size for size in sizes if size <= args.peer_max_size]
        if peer_sizes:
            loads.append(load_average())
            started = time.perf_counter()
            try:
                peer = anyio.run(run_peer, peer_sizes, args.searches, args.concurrency)
            except PeerUnavailable as exc:  # memos' numbers are still worth printing
                skipped.append(f"official memory server not run: {exc}")
            else:
                peer.notes.append(f"this part of the run took {time.perf_counter() - started:.0f} s")
        skipped += [estimate_note(size, peer) for size in sizes if size > args.peer_max_size]
    out = report(rows, peer, skipped, args.concurrency, "; ".join(loads))
    print(out)
    results = RESULTS
    results.mkdir(exist_ok=True)
    (results / "load.md").write_text(out, encoding="utf-8")
    plot(results / "load.png", rows, peer, args.concurrency)


if __name__ == "__main__":
    main()
