"""Load N memories into a real memosd over MCP and measure add throughput, search/get latency and memory;
then the same workload against the official MCP memory server (bench/peer_load.py), side by side.

    python bench/load.py                       # N = 10k then 100k, both corpora (~30 minutes on 2 cores)
    python bench/load.py --sizes 1000 --searches 50 --no-peer
    python bench/load.py --keep bench/results/load-db   # keep the loaded databases; the next run reuses them
    python bench/load.py --backend sqlite postgresql --no-peer   # the same rows on a real PostgreSQL beside
    python bench/load.py --keep DIR --backend sqlite postgresql  # PostgreSQL's server and databases kept too

Runs each corpus (`--corpus`, default all of bench/corpus.py's CORPORA): memos beside the floor measured in
the same run (the same model embedding each question alone, and an exact numpy KNN over the same vectors),
then the official server. Prints markdown tables for memos, the official server and their ratios (also
written to bench/results/load.md, with a plot in bench/results/load.png). Each size is its own database and
daemon. With `--keep`, a database already loaded is not loaded again: batch add is then measured on 1,000
more memories (which stay), and the peak RSS is that of the run, not of the first load. PostgreSQL's
server keeps its data in DIR/postgresql/server, a database per corpus and size, and the daemons' homes
beside it (DIR/postgresql/CORPUS-SIZE); bench/seed.py --backend postgresql fills them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.client import DEFAULT_MODEL, timed, wait_for_model
from bench.corpus import CORPORA
from bench.peer import PeerUnavailable
from bench.peer_load import PeerRun, estimate_note, run_peer
from bench.plot import Panel, bar_panels
from bench.report import RESULTS, Ratio, Row, load_average, machine, percentile, ratio_rows, rss_mib, table
from daemon import sqlite_driver
from daemon.config import EmbedderConfig
from daemon.embedder import load_model
from tests.conftest import QUANTIZED_DIR, free_port, mcp_client, start_daemon, stop_daemon, write_config
from tests.pg_server import PgCluster

BATCH = 500
REUSED_BATCH = 1000  # memories added to measure batch add on a reused database


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


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(postmaster: int) -> float:
    """CPU time of a PostgreSQL server so far: its main process, its children that exited, and those alive
    (the daemon's connections' backends, parallel workers)."""
    total = cpu_seconds(postmaster)
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                total += cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError):  # gone meanwhile
            continue
    return total


class Floor:
    """What any system must pay for one search, measured in the bench's own process: the same model
    embedding the question alone, and an exact KNN (one float32 matrix product) over the same vectors."""

    def __init__(self, model: str) -> None:
        # The model as memosd loads it by default (int8 copy, threads that sleep), or the floor is another's.
        config = EmbedderConfig(model_path=model, quantized_dir=str(QUANTIZED_DIR))
        self._model = load_model(config, Path(tempfile.gettempdir()) / "memos-bench-models")

    def embedding_ms(self, texts: list[str]) -> float:
        latencies = []
        for text in texts:
            start = time.perf_counter()
            list(self._model.embed([text]))
            latencies.append(time.perf_counter() - start)
        return percentile(latencies, 50) * 1000

    def knn_ms(self, db: Path, texts: list[str], k: int) -> float:
        conn = sqlite_driver.connect(str(db), read_only=True)
        try:
            blobs = [row[0] for row in conn.execute("SELECT embedding FROM memory_vectors")]
        finally:
            conn.close()
        matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)
        del blobs
        latencies = []
        for vector in self._model.embed(texts):
            query = np.asarray(vector, dtype=np.float32)
            start = time.perf_counter()
            similarity = matrix @ query
            top = np.argpartition(-similarity, k)[:k]
            top[np.argsort(-similarity[top])]
            latencies.append(time.perf_counter() - start)
        return percentile(latencies, 50) * 1000


async def run(
    corpus_name: str,
    size: int,
    searches: int,
    model: str,
    concurrency: list[int],
    keep: Path | None,
    floor: Floor | None,
    url: str | None = None,
    postmaster: int | None = None,
) -> Row:
    make_memories, make_queries, _ = CORPORA[corpus_name]
    with tempfile.TemporaryDirectory(prefix="memos-bench-") as tmp:
        home = keep / f"{corpus_name}-{size}" if keep else Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = write_config(home, port=port, model=model, url=url)
        started = time.perf_counter()
        daemon = start_daemon(config, home, port)
        ready_s = time.perf_counter() - started
        loaded_file, token_file = home / "loaded", home / "token"
        try:
            if token_file.exists():
                token = token_file.read_text().strip()
            else:
                token = daemon.add_agent("bench")
                token_file.write_text(token)
            corpus = make_memories(size + REUSED_BATCH)
            loaded = int(loaded_file.read_text()) if loaded_file.exists() else 0
            runs = len(list(home.glob("run-*")))
            (home / f"run-{runs}").touch()
            async with mcp_client(daemon.url, token) as client:
                await wait_for_model(client)  # so the load measures embedding too
                batch_start = time.perf_counter()
                to_load = corpus[loaded:size]
                if not to_load:  # reused: measure on more memories
                    to_load = [f"{text} (run {runs})" for text in corpus[size : size + REUSED_BATCH]]
                for start in range(0, len(to_load), BATCH):
                    items = [{"content": text, "kind": "fact"} for text in to_load[start : start + BATCH]]
                    await timed(client, "memory_add_batch", {"items": items})
                batch_rate = len(to_load) / (time.perf_counter() - batch_start)
                loaded = max(loaded, size)
                loaded_file.write_text(str(loaded))
                singles = [
                    (
                        await timed(
                            client,
                            "memory_add",
                            {"content": f"single add {size}-{runs}-{i}: {corpus[i]}"},
                        )
                    )[0]
                    for i in range(100)
                ]
                await timed(client, "cube_configure", {"cube": "@bench", "report_similar": False})
                unchecked = [
                    (
                        await timed(
                            client,
                            "memory_add",
                            {"content": f"plain add {size}-{runs}-{i}: {corpus[i]}"},
                        )
                    )[0]
                    for i in range(100)
                ]
                await timed(client, "cube_configure", {"cube": "@bench", "report_similar": True})
                ids = [
                    hit["id"]
                    for hit in (await timed(client, "memory_search", {"query": "deploy"}))[1]["results"]
                ]
                gets = [(await timed(client, "memory_get", {"id": ids[i % len(ids)]}))[0] for i in range(200)]
                row: Row = {
                    "memories": size,
                    "batch add/s": batch_rate,
                    "single add p50 ms": statistics.median(singles) * 1000,
                    "add p50 ms, no similarity check": statistics.median(unchecked) * 1000,
                    "single add/s": 1 / statistics.mean(singles),
                    "get p50 ms": statistics.median(gets) * 1000,
                }
                texts = make_queries(searches)
                for agents in concurrency:
                    cpu = cpu_seconds(daemon.process.pid)
                    server_cpu = server_cpu_seconds(postmaster) if postmaster else 0.0
                    lat = await search_latencies(daemon.url, token, texts, agents)
                    spent = (cpu_seconds(daemon.process.pid) - cpu) / len(lat) * 1000
                    if agents == concurrency[0]:  # CPU is what the machine's load does not inflate much
                        row["daemon CPU ms/search"] = spent
                        if postmaster:
                            row["PostgreSQL CPU ms/search"] = (
                                (server_cpu_seconds(postmaster) - server_cpu) / len(lat) * 1000
                            )
                    row[f"search p50 ms ({agents} agents)"] = percentile(lat, 50) * 1000
                    row[f"search p99 ms ({agents} agents)"] = percentile(lat, 99) * 1000
                    if agents > 1:
                        row[f"searches/s ({agents} agents)"] = len(lat) / sum(lat) * agents
                        row[f"daemon CPU ms/search ({agents} agents)"] = spent
                db = home / "data" / "memos.db"
                if floor is not None and url is None:  # the floor's KNN reads the SQLite file
                    embedding = floor.embedding_ms(texts[:100])
                    knn = floor.knn_ms(db, texts[:100], 80)
                    row["floor: query embedding p50 ms"] = embedding
                    row["floor: exact KNN p50 ms"] = knn
                    row["search p50 ÷ floor"] = row[f"search p50 ms ({concurrency[0]} agents)"] / (
                        embedding + knn
                    )
                rss, peak = rss_mib(daemon.process.pid)
                row["RSS MiB"] = rss
                row["peak RSS MiB"] = peak
                row["db MiB"] = (
                    database_mib(url)
                    if url
                    else sum(p.stat().st_size for p in db.parent.glob("memos.db*")) / 2**20
                )
                row["startup-to-ready s"] = ready_s
                print(f"  measured {corpus_name} {size}: {row}", file=sys.stderr, flush=True)
        finally:
            stop_daemon(daemon)
    return row


def kept_database_name(corpus: str, size: int) -> str:
    """The PostgreSQL database that `--keep` keeps a corpus' SIZE memories in (bench/seed.py fills it)."""
    return f"memos_{corpus.replace('-', '_')}_{size}"


def database_mib(url: str) -> float:
    import psycopg

    with psycopg.connect(url) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return float(size[0]) / 2**20 if size else 0.0


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
    ours: dict[str, list[Row]], peer: PeerRun | None, skipped: list[str], concurrency: list[int], loads: str
) -> str:
    parts = [f"Machine: {machine()}", f"Load average (1, 5, 15 min) before each part: {loads}"]
    for name, rows in ours.items():
        corpus = name.removesuffix(" on postgresql")  # the PostgreSQL rows of `--backend postgresql`
        parts += ["", f"memos, corpus {name} ({CORPORA[corpus][2]}):", "", table(rows)]
    first = next(iter(ours.values()))
    if peer:
        parts += [
            "",
            f"Official MCP memory server: @modelcontextprotocol/server-memory@{peer.version}, node {peer.node}"
            f" (corpus {next(iter(ours))})",
            "",
            table(peer.rows),
            "",
            *(f"- {note}" for note in [*peer.notes, *skipped]),
            "",
            "Ratios: official server ÷ memos for latency, memory, size and startup; memos ÷ official server for "
            "throughput. Above 1 means memos is faster or smaller.",
            "",
            table(ratio_rows(first, peer.rows, ratios(concurrency))),
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
    parser.add_argument("--corpus", nargs="+", choices=sorted(CORPORA), default=list(CORPORA))
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep each corpus' loaded database in DIR/CORPUS and reuse it on the next run",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip measuring the floor")
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=["sqlite", "postgresql"],
        default=["sqlite"],
        help="the stores to measure; postgresql: a real server (tests/pg_server.py), a database per size",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the official MCP memory server")
    parser.add_argument(
        "--peer-max-size",
        type=int,
        default=10_000,
        help="largest size run against the official server (every call of which reads and rewrites its whole file)",
    )
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    floor = None if args.no_floor or args.model == "none" else Floor(args.model)
    loads = []
    rows: dict[str, list[Row]] = {}
    with ExitStack() as stack:
        # With --keep, PostgreSQL's homes, server and databases are kept under DIR/postgresql.
        pg_keep = args.keep.resolve() / "postgresql" if args.keep else None
        cluster = (
            stack.enter_context(PgCluster.start(pg_keep / "server" if pg_keep else None))
            if "postgresql" in args.backend
            else None
        )
        for name in args.corpus:
            for backend in args.backend:
                loads.append(f"{name} on {backend} {load_average()}")
                keep = args.keep.resolve() if args.keep and backend == "sqlite" else pg_keep
                label = name if backend == "sqlite" else f"{name} on postgresql"
                rows[label] = []
                for size in sizes:
                    with ExitStack() as per_size:
                        url = None
                        if cluster and backend != "sqlite":
                            url = (
                                cluster.kept_database(kept_database_name(name, size))
                                if pg_keep
                                else per_size.enter_context(cluster.database())
                            )
                        rows[label].append(
                            anyio.run(
                                run,
                                name,
                                size,
                                args.searches,
                                args.model,
                                args.concurrency,
                                keep,
                                floor,
                                url,
                                cluster.postmaster_pid() if url and cluster else None,
                            )
                        )
    peer: PeerRun | None = None
    skipped: list[str] = []
    if not args.no_peer:
        peer_sizes = [size for size in sizes if size <= args.peer_max_size]
        if peer_sizes:
            loads.append(f"official server {load_average()}")
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
    plot(results / "load.png", next(iter(rows.values())), peer, args.concurrency)


if __name__ == "__main__":
    main()
