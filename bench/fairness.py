"""One agent's load against another's: a calm agent's search latency while a second agent keeps many searches
in flight (with the fair gate, and with searches unbounded as before it), and the cost of a write when many
tasks are open (pack rebuilds per write, CPU per write including the background refresh).

    python bench/fairness.py                          # the real model, 2000 memories, 300 open tasks
    python bench/fairness.py --model none --burst 16 --tasks 300

Runs the daemon core in-process (the service API the MCP layer calls) so the numbers are the core's own.
Prints markdown tables (also written to bench/results/fairness.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.client import DEFAULT_MODEL
from bench.corpus import memories, queries
from bench.report import RESULTS, Row, load_average, machine, percentile, table
from daemon import NewMemory, SearchQuery, Services, agent_named, open_services
from daemon.events import Change, PackReady
from daemon.fairness import FairGate
from tests.conftest import make_config


async def calm_latencies(services: Services, burst: int, rounds: int) -> tuple[list[float], float]:
    """The calm agent's search latencies (ms) while the burst agent keeps `burst` searches in flight."""
    texts = queries(rounds + burst, seed=7)
    latencies: list[float] = []
    done = 0
    stop = anyio.Event()

    async def burster(text: str) -> None:
        nonlocal done
        while not stop.is_set():
            await services.search.search(agent_named("burst"), SearchQuery(query=text, k=10))
            done += 1

    async with anyio.create_task_group() as tg:
        window = time.perf_counter()
        for text in texts[:burst]:
            tg.start_soon(burster, text)
        await anyio.sleep(0.5)
        for text in texts[burst:]:
            started = time.perf_counter()
            await services.search.search(agent_named("calm"), SearchQuery(query=text, k=10))
            latencies.append((time.perf_counter() - started) * 1000)
        stop.set()
        window = time.perf_counter() - window
    return latencies, done / window


async def idle(services: Services) -> None:
    quiet = 0
    while quiet < 5:
        await anyio.sleep(0.02)
        busy = any(m["queued"] or m["running"] for m in services.scheduler.snapshot().values())
        quiet = 0 if busy else quiet + 1


async def write_cost(services: Services, tasks: int, writes: int) -> Row:
    """Open `tasks` tasks, two of them in scope of the written cube; then time `writes` writes."""
    lead = agent_named("lead")
    for cube in ("hot", "cold"):
        await services.cubes.create(lead, cube)
        await services.cubes.share(lead, cube, "worker", "read")
    for i in range(tasks - 2):
        await services.tasks.handoff(
            lead, "worker" if i % 2 else "outsider", f"Job {i}", cubes=["cold"] if i % 2 else None
        )
    await services.tasks.handoff(lead, "worker", "Hot path", cubes=["hot"])
    await services.tasks.handoff(lead, "worker", "Anything")
    await idle(services)
    rebuilt = 0

    def count(change: Change) -> None:
        nonlocal rebuilt
        rebuilt += isinstance(change, PackReady)

    unsubscribe = services.hub.subscribe(count)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(writes):
        await services.additions.add(
            lead, "hot", NewMemory(content=f"The hot path caches token {i} for a minute")
        )
    await idle(services)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    unsubscribe()
    return {
        "open tasks": tasks, "tasks in scope": 2, "writes": writes, "pack rebuilds per write": rebuilds(rebuilt, writes),
        "CPU ms per write (incl. refresh)": cpu * 1000 / writes, "wall ms per write (incl. refresh)": wall * 1000 / writes,
    }  # fmt: skip


def rebuilds(count: int, writes: int) -> float:
    return round(count / writes, 2)


async def run(
    model: str, size: int, burst: int, rounds: int, tasks: int, writes: int, slots: list[int]
) -> tuple[list[Row], Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="memos-fairness-") as tmp:
        async with open_services(make_config(Path(tmp), model)) as services:
            if model != "none":
                await services.vectors.attached.wait()
            await services.groups.add("staff")  # so the lead can name the others
            for name in ("burst", "calm", "lead", "worker", "outsider"):
                await services.identities.add(name)
                await services.groups.add_member("staff", name)
            corpus = memories(size)
            for name in ("burst", "calm"):
                for start in range(0, size, 200):
                    batch = [NewMemory(content=text) for text in corpus[start : start + 200]]
                    await services.additions.add_batch(agent_named(name), None, batch)
            fair = services.search.gate
            gates = [(f"fair gate, {n} slots", FairGate(n)) for n in slots]
            for label, gate in [*gates, ("unbounded (before)", FairGate(10_000))]:
                services.search.gate = gate
                latencies, done = await calm_latencies(services, burst, rounds)
                rows.append({
                    "searches": label, "burst in flight": burst, "calm p50 ms": percentile(latencies, 50),
                    "calm p90 ms": percentile(latencies, 90), "calm max ms": max(latencies),
                    "burst searches/s": done,
                })  # fmt: skip
            services.search.gate = fair
            cost = await write_cost(services, tasks, writes)
    return rows, cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="model directory, or none (lexical only)")
    parser.add_argument("--size", type=int, default=2000, help="memories per agent")
    parser.add_argument("--burst", type=int, default=16, help="searches the burst agent keeps in flight")
    parser.add_argument("--rounds", type=int, default=30, help="searches the calm agent makes")
    parser.add_argument("--tasks", type=int, default=300, help="open tasks")
    parser.add_argument("--writes", type=int, default=50, help="writes timed")
    parser.add_argument("--slots", type=int, nargs="+", default=[2, 4, 8], help="gate sizes to compare")
    args = parser.parse_args()
    rows, cost = anyio.run(
        run, args.model, args.size, args.burst, args.rounds, args.tasks, args.writes, args.slots
    )
    text = (
        f"Machine: {machine()}; load average {load_average()}; model {Path(args.model).name}.\n\n"
        f"{table(rows)}\n\n{table([cost])}\n"
    )
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fairness.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
