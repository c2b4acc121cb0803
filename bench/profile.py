"""Where one search and one single add spend memosd's CPU, on a database already loaded (issue 17).

    python bench/profile.py DIR                      # DIR: a `load.py --keep`/`seed.py` database (copy it first)
    python bench/profile.py DIR --searches 200 --adds 60 --py-spy .venv/bin/py-spy
    python bench/profile.py DIR --searches 0 --adds 0 --batches 4 --py-spy .venv/bin/py-spy
    python bench/profile.py DIR --adds 0 --search-setting "episode_spread = 0" --blend "context = 0"

Starts memosd on DIR's database with the real model, runs `--searches` questions of the corpus (one agent,
back to back), then `--adds` single `memory_add`s (similarity check on; `--add-agents` agents at once),
then `--batches` `memory_add_batch` calls of `--batch-size` memories each, and prints the daemon's CPU per
operation (per memory for the batches) from /proc (what a loaded machine inflates least) and each phase's
p50. With `--py-spy`, samples memosd at 200 Hz during each phase and prints the share of samples per part
(SQLite, KNN, embedding, MCP and HTTP, fusion...), by the frames each sample holds. The adds stay in the
database.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.client import DEFAULT_MODEL, timed, wait_for_model
from bench.corpus import CORPORA
from bench.load import cpu_seconds
from bench.report import load_average, percentile, rss_mib
from tests.conftest import free_port, mcp_client, start_daemon, stop_daemon, write_config

# Leaf frames of a thread that waits (py-spy on a loaded machine still samples some of them): not work.
IDLE = (
    "_connection_worker_thread (aiosqlite/core.py:59)",  # an aiosqlite thread waiting for a statement
    "Condition.wait (threading.py",
    "EpollSelector.select (selectors.py",
    "SimpleQueue.get",
    "Queue.get (queue.py",
)
# A sample belongs to the first part whose marker one of its frames holds (markers checked in this order).
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("KNN (vector cache)", ("vector_cache.py", "knn.py")),
    ("query embedding (onnxruntime)", ("onnxruntime", "fastembed", "tokenizers", "embedder.py")),
    ("SQLite statements (aiosqlite threads)", ("_connection_worker_thread (aiosqlite/core.py:63)",)),
    ("worker thread in C, no Python frame", ("WorkerThread.run (anyio",)),
    ("signals and fusion", ("fusion.py", "fuse (", "signals (", "episodes.py", "phrasings.py")),
    ("row fetch (rows by name) and hits", ("_hits (", "memory_from_row", "memories.py", "rows.py")),
    ("search's own Python", ("search.py", "bm25.py", "lexical.py", "additions.py", "vectors.py")),
    (
        "MCP/HTTP, validation, JSON",
        ("mcp/", "starlette", "uvicorn", "pydantic", "msgspec", "mcp_server", "h11"),
    ),
    ("event-loop hand-offs (asyncio, anyio, aiosqlite)", ("asyncio", "anyio", "aiosqlite")),
]


def parts(raw: Path) -> Counter[str]:
    """Samples per part from py-spy's raw (collapsed) output: `frame;frame;... count` per line."""
    counts: Counter[str] = Counter()
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or any(stack.rsplit(";", 1)[-1].startswith(leaf) for leaf in IDLE):
            continue
        part = next((name for name, markers in PARTS if any(m in stack for m in markers)), "other")
        counts[part] += int(count)
    return counts


def sample(py_spy: Path, pid: int, raw: Path, gil: bool = False) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` at 200 Hz into `raw` until it gets SIGINT; with `gil`, only the thread holding
    the GIL (what 16 agents at once queue behind), else every thread that is not idle."""
    command = [str(py_spy), "record", "-r", "200", "-p", str(pid), "--format", "raw", "-o", str(raw)]
    return subprocess.Popen(
        command + (["--gil"] if gil else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def phase(
    name: str,
    pid: int,
    py_spy: Path | None,
    out: Path,
    work: Callable[[], Awaitable[list[float]]],
    per: int = 1,
) -> None:
    """Run `work` (its latencies, one per call), each call `per` operations, and print where the CPU went."""
    spy = None
    if py_spy is not None:
        spy = sample(py_spy, pid, out / f"{name}.txt")
        await anyio.sleep(1)
    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    latencies = await work()
    wall = time.perf_counter() - started
    spent = cpu_seconds(pid) - cpu
    ops = len(latencies) * per
    print(
        f"{name}: {ops} ops, {ops / wall:.1f} ops/s, daemon CPU {spent / ops * 1000:.1f} ms/op,"
        f" p50 {percentile(latencies, 50) * 1000:.1f} ms, p99 {percentile(latencies, 99) * 1000:.1f} ms"
        f" a call, load average {load_average()}"
    )
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
        counts = parts(out / f"{name}.txt")
        total = sum(counts.values()) or 1
        for part, count in counts.most_common():
            print(f"  {part}: {count / total:.0%} ({spent / ops * 1000 * count / total:.1f} ms/op)")


async def main(args: argparse.Namespace) -> None:
    home: Path = args.dir.resolve()
    token = (home / "token").read_text().strip()
    port = free_port()
    settings = [f'lexical_index = "{args.lexical_index}"'] if args.lexical_index else []
    settings += [f'vector_precision = "{args.vector_precision}"'] if args.vector_precision else []
    settings += args.search_setting
    extra = "\n".join(["[search]", *settings]) if settings else ""
    if args.blend:
        extra += "\n[search.blend]\n" + "\n".join(args.blend)
    if args.embedder_threads:  # the config's [embedder] table is the one open before `extra`
        extra = f"threads = {args.embedder_threads}\n{extra}"
    if args.embedder_precision:
        extra = f'precision = "{args.embedder_precision}"\n{extra}'
    config = write_config(home, port=port, model=str(args.model), extra=extra)
    daemon = start_daemon(config, home, port)
    out: Path = args.out
    make_memories, make_queries, _ = CORPORA[args.corpus]
    try:
        async with mcp_client(daemon.url, token) as client:
            await wait_for_model(client)
            if args.lexical_index == "memory":
                await anyio.sleep(args.settle)  # the lexical index fills on a worker thread (FTS5 until then)
            print(f"ready: RSS / peak MiB {rss_mib(daemon.process.pid)}")
            texts = make_queries(args.searches)
            for text in texts[:10]:  # warm the caches
                await timed(client, "memory_search", {"query": text, "k": 10})

            async def searches() -> list[float]:
                return [(await timed(client, "memory_search", {"query": t, "k": 10}))[0] for t in texts]

            contents = make_memories(args.adds)
            stamp = int(time.time())

            async def adds() -> list[float]:
                """`--add-agents` agents (sessions) at once, each adding its share back to back."""
                latencies: list[float] = []

                async def agent(first: int) -> None:
                    async with mcp_client(daemon.url, token) as own:
                        for i in range(first, len(contents), args.add_agents):
                            text = f"profile add {stamp}-{i}: {contents[i]}"
                            latencies.append((await timed(own, "memory_add", {"content": text}))[0])

                async with anyio.create_task_group() as tg:
                    for first in range(args.add_agents):
                        tg.start_soon(agent, first)
                return latencies

            batch_texts = make_memories(args.batches * args.batch_size)

            async def batches() -> list[float]:
                size = args.batch_size
                return [
                    (
                        await timed(
                            client,
                            "memory_add_batch",
                            {
                                "items": [
                                    {"content": f"profile batch {stamp}-{b}-{i}: {text}", "kind": "fact"}
                                    for i, text in enumerate(batch_texts[b * size : (b + 1) * size])
                                ]
                            },
                        )
                    )[0]
                    for b in range(args.batches)
                ]

            if texts:
                await phase("search", daemon.process.pid, args.py_spy, out, searches)
            if contents:
                await phase("add", daemon.process.pid, args.py_spy, out, adds)
            if args.batches:
                await phase("batch", daemon.process.pid, args.py_spy, out, batches, args.batch_size)
            print(f"end: RSS / peak MiB {rss_mib(daemon.process.pid)}")
    finally:
        stop_daemon(daemon)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dir", type=Path, help="a loaded database directory (memos.toml, token, data/)")
    parser.add_argument(
        "--search-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='a [search] line of memos.toml, e.g. "episode_spread = 0" (repeatable)',
    )
    parser.add_argument("--embedder-threads", type=int, help="[embedder] threads (default: unset, all cores)")
    parser.add_argument("--embedder-precision", choices=["int8", "float32"], help="[embedder] precision")
    parser.add_argument(
        "--blend", action="append", default=[], metavar="KEY=VALUE", help="a [search.blend] line (repeatable)"
    )
    parser.add_argument("--corpus", default="many-matches", choices=sorted(CORPORA))
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--adds", type=int, default=60)
    parser.add_argument("--add-agents", type=int, default=1, help="agents adding at once")
    parser.add_argument("--batches", type=int, default=0, help="memory_add_batch calls after the adds")
    parser.add_argument("--batch-size", type=int, default=500, help="memories per memory_add_batch call")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--lexical-index", choices=["memory", "sql"], default=None)
    parser.add_argument("--vector-precision", choices=["int8", "float32"], default=None)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds for the lexical index to fill")
    parser.add_argument("--py-spy", type=Path, default=None, help="py-spy to sample memosd with")
    parser.add_argument("--out", default=os.path.join("bench", "results", "profile"))
    arguments = parser.parse_args()
    arguments.out = Path(arguments.out).resolve()
    arguments.out.mkdir(parents=True, exist_ok=True)
    anyio.run(main, arguments)
