"""memosd's CPU per MCP tool call, for a call that does little (`memory_get` of one id) and for a search
with a large result (`memory_search`, k=10), over the SDK's own client on loopback, back to back (issue 17).

    python bench/mcp_cost.py DIR                     # DIR: a copy of a loaded database (memos.toml, token, data/)
    python bench/mcp_cost.py DIR --calls 400 --rounds 3 --py-spy .venv/bin/py-spy
    python bench/mcp_cost.py DIR --mode legacy       # the handshake era (initialize, Mcp-Session-Id)

Starts memosd on DIR's database with the real model, then in each round runs `--calls` gets and
`--searches` searches (questions of the many-matches corpus) and prints the daemon's CPU per call from /proc,
the client's own CPU (the SDK's client, on the same cores) and the load average beside it. With `--py-spy`, samples memosd at 200 Hz during the gets of the last round and
prints where a call's CPU goes, by layer (HTTP parsing, middleware, the SDK's dispatch, validation, our
tool code, the service...), from the frames each sample holds.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.client import DEFAULT_MODEL, call, wait_for_model
from bench.corpus import CORPORA
from bench.load import cpu_seconds
from bench.profile import IDLE, sample
from bench.report import load_average
from tests.conftest import free_port, mcp_client, start_daemon, stop_daemon, write_config

# Where a sample's CPU goes: a sample inside one of these calls belongs to it, whatever runs beneath (the
# token check's SQLite read and thread hop are the token check's), checked in this order...
WHOLE: list[tuple[str, tuple[str, ...]]] = [
    ("token check (verify_token: SQLite read on a reader thread)", ("verify_token",)),
    ("SQLite statements (aiosqlite threads)", ("_connection_worker_thread (aiosqlite/core.py:63)",)),
    ("the service: search pipeline (embedding, KNN, SQL, fusion)", ("Search.search (",)),
    ("the service: other daemon code", ("daemon/",)),
]
# ...otherwise to the innermost frame of one of these files (the stdlib, asyncio and anyio roll up to their
# caller: a memory stream's hand-off is the SDK's transport's cost), else to the event loop itself.
FILES: list[tuple[str, tuple[str, ...]]] = [
    ("pydantic validation / serialisation", ("pydantic",)),
    ("result encoding (to_result, msgspec)", ("msgspec", "mcp_server/wire.py")),
    ("argument checks (check_arguments)", ("mcp_server/argument_errors.py",)),
    ("request log", ("mcp_server/request_log.py",)),
    ("session quota", ("mcp_server/session_quota.py",)),
    ("our other MCP code", ("mcp_server/",)),
    ("SDK: bearer auth middleware", ("mcp/server/auth/",)),
    ("SDK: tool call (mcpserver)", ("mcp/server/mcpserver/",)),
    ("SDK: dispatch, sessions, transport", ("mcp/", "mcp_types/", "opentelemetry")),
    ("SSE framing (sse_starlette)", ("sse_starlette/",)),
    ("starlette (routing, middleware)", ("starlette/",)),
    ("uvicorn / h11 (HTTP parsing and writing)", ("uvicorn/", "h11/")),
]
LOOP = "event loop (select, callbacks), no caller of ours"


# An idle AnyIO worker thread shows in py-spy's samples as busy in `context.run` with no Python frame
# beneath (a fifth of a memory_get's samples), while /proc says it used no CPU (1 tick in 10 s): not work.
IDLE_WORKER = "WorkerThread.run (anyio/_backends/_asyncio.py:1124)"


def layer(frames: list[str]) -> str:
    for name, markers in WHOLE:
        if any(m in frame for frame in frames for m in markers):
            return name
    for frame in reversed(frames):
        for name, markers in FILES:
            if any(m in frame for m in markers):
                return name
    return LOOP


def layers(raw: Path) -> tuple[Counter[str], Counter[str]]:
    """Samples per layer, and per innermost non-stdlib frame, from py-spy's raw output."""
    counts: Counter[str] = Counter()
    frames_seen: Counter[str] = Counter()
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        if not count.isdigit() or leaf == IDLE_WORKER or any(leaf.startswith(idle) for idle in IDLE):
            continue
        frames = stack.split(";")
        counts[layer(frames)] += int(count)
        own = [f for f in frames if any(m in f for _, ms in FILES for m in ms) or "daemon/" in f]
        frames_seen[own[-1] if own else frames[-1]] += int(count)
    return counts, frames_seen


def loop_thread_cpu_seconds(pid: int) -> float:
    """CPU time of the process's main thread so far: the event loop's (the rest is SQLite, the model...)."""
    return cpu_seconds_of(Path(f"/proc/{pid}/task/{pid}"))


def cpu_seconds_of(task: Path) -> float:
    try:
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # the thread ended meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(args: argparse.Namespace) -> None:
    home: Path = args.dir.resolve()
    token = (home / "token").read_text().strip()
    port = free_port()
    config = write_config(home, port=port, model=str(args.model))
    daemon = start_daemon(config, home, port)
    pid = daemon.process.pid
    _, make_queries, _ = CORPORA["many-matches"]
    texts = make_queries(args.searches)
    try:
        async with mcp_client(daemon.url, token, mode=args.mode) as client:
            await wait_for_model(client)
            found = await call(client, "memory_search", {"query": make_queries(1)[0], "k": 10})
            memory_id = found["results"][0]["id"]
            for text in make_queries(20):  # warm the caches
                await call(client, "memory_search", {"query": text, "k": 10})
                await call(client, "memory_get", {"id": memory_id})

            async def gets() -> None:
                for _ in range(args.calls):
                    await call(client, "memory_get", {"id": memory_id})

            async def searches() -> None:
                for text in texts:
                    await call(client, "memory_search", {"query": text, "k": 10})

            for round_ in range(1, args.rounds + 1):
                for name, work, n in (("get", gets, args.calls), ("search", searches, len(texts))):
                    if not n:
                        continue
                    spy = None
                    raw = args.out / f"mcp-cost-{name}.txt"
                    if args.py_spy is not None and round_ == args.rounds:
                        spy = sample(args.py_spy, pid, raw, args.gil)
                        await anyio.sleep(1)
                    cpu, loop, started = cpu_seconds(pid), loop_thread_cpu_seconds(pid), time.perf_counter()
                    own = time.process_time()
                    await work()
                    wall, spent = time.perf_counter() - started, cpu_seconds(pid) - cpu
                    own = time.process_time() - own
                    on_loop = loop_thread_cpu_seconds(pid) - loop
                    print(
                        f"round {round_} {name}: daemon CPU {spent / n * 1000:.2f} ms/call"
                        f" (event-loop thread {on_loop / n * 1000:.2f}),"
                        f" {wall / n * 1000:.2f} ms/call wall, the client's CPU {own / n * 1000:.2f} ms/call,"
                        f" load average {load_average()}",
                        flush=True,
                    )
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)
                        spy.wait(timeout=60)
                        counts, frames = layers(raw)
                        total = sum(counts.values()) or 1
                        for name, count in counts.most_common():
                            share = spent / n * 1000 * count / total
                            print(f"  {name}: {count / total:.0%} ({share:.2f} ms/call)")
                        if args.frames:
                            for frame, count in frames.most_common(args.frames):
                                print(f"    {count / total:5.1%} {frame}")
    finally:
        stop_daemon(daemon)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dir", type=Path, help="a loaded database directory (memos.toml, token, data/)")
    parser.add_argument("--calls", type=int, default=2000, help="memory_get calls per round")
    parser.add_argument("--searches", type=int, default=200, help="memory_search calls per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto", help="protocol era")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--py-spy", type=Path, default=None, help="py-spy to sample memosd with")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    parser.add_argument("--frames", type=int, default=0, help="also print the N busiest frames")
    parser.add_argument("--out", type=Path, default=Path("bench", "results", "profile"))
    arguments = parser.parse_args()
    arguments.out = arguments.out.resolve()
    arguments.out.mkdir(parents=True, exist_ok=True)
    anyio.run(main, arguments)
