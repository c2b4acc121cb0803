"""bench/load.py's workload against the official MCP memory server, through its own tools.

A memory is an entity named `memory-<i>` of type "fact" with the text as its one observation. Batch adds are
create_entities calls of BATCH entities, a single add is create_entities of one, a get is open_nodes of one
name, a search is search_nodes with the question as given. The server is one stdio process, so concurrent
clients are concurrent calls on its one session.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass

import anyio

from bench.corpus import memories, queries
from bench.peer import OfficialMemoryServer
from bench.report import Row, percentile, rss_mib

BATCH = 500
KEYWORD_QUESTIONS = 50  # search_keywords makes one call per content word: fewer questions keep it short


@dataclass
class PeerRun:
    rows: list[Row]
    version: str
    node: str
    notes: list[str]
    seconds: dict[int, tuple[float, float]]  # size -> (loading s, measuring s), to estimate larger sizes


async def timed(peer: OfficialMemoryServer, tool: str, arguments: dict[str, object]) -> tuple[float, Row]:
    start = time.perf_counter()
    result = await peer.call(tool, arguments)
    return time.perf_counter() - start, result


async def search_latencies(peer: OfficialMemoryServer, texts: list[str], clients: int) -> list[float]:
    latencies: list[float] = []

    async def client(share: list[str]) -> None:
        for text in share:
            latencies.append((await timed(peer, "search_nodes", {"query": text}))[0])

    async with anyio.create_task_group() as tg:
        for i in range(clients):
            tg.start_soon(client, texts[i::clients])
    return latencies


def entity(name: str, text: str) -> dict[str, object]:
    return {"name": name, "entityType": "fact", "observations": [text]}


async def run_peer(sizes: list[int], searches: int, concurrency: list[int]) -> PeerRun:
    async with OfficialMemoryServer(via_npx=False) as direct:
        direct_start = direct.startup_s
    node = (await anyio.run_process(["node", "--version"])).stdout.decode().strip()
    rows: list[Row] = []
    seconds: dict[int, tuple[float, float]] = {}
    corpus, loaded = memories(max(sizes)), 0
    async with OfficialMemoryServer() as peer:
        pid = peer.server_pid()
        for size in sizes:
            load_start = time.perf_counter()
            for start in range(loaded, size, BATCH):
                batch = [entity(f"memory-{i}", corpus[i]) for i in range(start, min(start + BATCH, size))]
                await timed(peer, "create_entities", {"entities": batch})
            load_s = time.perf_counter() - load_start
            batch_rate = (size - loaded) / load_s
            loaded = size
            singles = [
                (
                    await timed(
                        peer,
                        "create_entities",
                        {"entities": [entity(f"single-{size}-{i}", f"single add {size}-{i}: {corpus[i]}")]},
                    )
                )[0]
                for i in range(100)
            ]
            names = [
                e["name"] for e in (await timed(peer, "search_nodes", {"query": "deploy"}))[1]["entities"]
            ]
            names = names[:10]  # memos' gets use its first page of 10 results
            gets = [
                (await timed(peer, "open_nodes", {"names": [names[i % len(names)]]}))[0] for i in range(200)
            ]
            row: Row = {
                "memories": size,
                "batch add/s": batch_rate,
                "single add p50 ms": statistics.median(singles) * 1000,
                "single add/s": 1 / statistics.mean(singles),
                "get p50 ms": statistics.median(gets) * 1000,
            }
            texts = queries(searches)
            hits = [len((await peer.call("search_nodes", {"query": t}))["entities"]) > 0 for t in texts]
            for clients in concurrency:
                lat = await search_latencies(peer, texts, clients)
                row[f"search p50 ms ({clients} clients)"] = percentile(lat, 50) * 1000
                row[f"search p99 ms ({clients} clients)"] = percentile(lat, 99) * 1000
            row["questions found %"] = 100 * sum(hits) / len(hits)
            keyword = []
            for text in texts[:KEYWORD_QUESTIONS]:
                started = time.perf_counter()
                await peer.search_keywords(text)
                keyword.append(time.perf_counter() - started)
            row["keyword search p50 ms"] = statistics.median(keyword) * 1000
            rss, peak = rss_mib(pid) if pid else (None, None)
            row["RSS MiB"] = rss
            row["peak RSS MiB"] = peak
            row["file MiB"] = peer.memory_file.stat().st_size / 2**20
            row["startup-to-ready s"] = peer.startup_s
            rows.append(row)
            seconds[size] = (load_s, time.perf_counter() - load_start - load_s)
            print(f"  peer measured {size}: {row}", file=sys.stderr, flush=True)
        version = f"{peer.version} (its serverInfo says {peer.reported_version})"
    notes = [
        "one server process (node, single-threaded); N clients = N concurrent calls on its one stdio session",
        "search_nodes is a substring match of the whole question, and returns every match with all its "
        "observations (memos returns the 10 best); 'questions found %' is how many questions matched at all",
        f"keyword search = search_keywords: one search_nodes per content word, over {KEYWORD_QUESTIONS} questions",
        "no fsync: the server writes a temporary file and renames it (memos commits with synchronous=FULL)",
        "startup-to-ready: `npx -y` (package cached, npm still checks the registry) to the end of the "
        f"handshake; started with node directly: {direct_start:.2f} s",
    ]
    if pid is None:
        notes.append("RSS: the server's node process was not found in /proc")
    return PeerRun(rows, version, node, notes, seconds)


def estimate_note(size: int, run: PeerRun | None) -> str:
    """Why a size was skipped for the peer, with the time it would take, scaled from the largest measured."""
    reason = (
        f"peer skipped at {size:,} memories: the official server reads and rewrites its whole JSONL file on "
        "every call, so loading grows with the square of the size"
    )
    if not run or not run.seconds:
        return reason
    measured = max(run.seconds)
    load_s, measure_s = run.seconds[measured]
    scale = size / measured
    estimate = load_s * scale**2 + measure_s * scale
    about = f"{estimate / 60:.0f} min" if estimate >= 60 else f"{estimate:.0f} s"
    return f"{reason}; about {about}, scaled from {measured:,} (raise --peer-max-size to run it)"
