"""Soak: many agents write, update, search and share at once against a fresh memosd, for as long as you like.

    python bench/soak.py                  # 16 agents for 1 minute
    python bench/soak.py --minutes 30     # a long run
    python bench/soak.py --agents 32 --seconds 90 --model none

Every agent has its own MCP connection (even-numbered agents in the handshake era, the others in the
modern sessionless era) and, until the time is up, picks an operation at random: add a memory to its own
cube or to a shared one, update one of its memories, increment a counter kept in one shared memory
(`memory_get`, then `memory_update` with `expected_version`, retried on a conflict), search, list, get,
share its cube with another agent. Afterwards every acknowledged write is read back, the counter must
equal the number of acknowledged increments, and the daemon's log must hold no error. Prints a markdown
table (also written to bench/results/soak.md): operations, errors, latency p50/p99 per operation, daemon
RSS at the start and the end. `tests/test_concurrency.py` runs the same workload for a few seconds.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from mcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.client import DEFAULT_MODEL, ToolFailed, call
from bench.client import wait_for_model as wait_until_hybrid
from bench.corpus import memories, queries
from bench.report import RESULTS, machine, percentile, rss_mib
from daemon import load_config, open_store_services
from tests.conftest import RunningDaemon, free_port, mcp_client, start_daemon, stop_daemon, write_config

SHARED_CUBE = "soak-shared"
COUNTER_PREFIX = "soak counter = "
# How often each operation is picked; "increment" is one acknowledged increment, however many tries it took.
WEIGHTS = {
    "add": 25,
    "add_shared": 10,
    "update": 10,
    "increment": 10,
    "search": 20,
    "list": 5,
    "get": 10,
    "share": 5,
}


@dataclass
class Ledger:
    """What the daemon acknowledged, to check afterwards, and how long each operation took."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # memory id -> (the agent that wrote it, the content it must have now)
    writes: dict[str, tuple[str, str]] = field(default_factory=dict)
    grants: set[tuple[str, str]] = field(default_factory=set)  # (cube, grantee) given read
    increments: int = 0
    conflicts: int = 0
    counter_id: str = ""
    seconds: float = 0.0

    @property
    def error_count(self) -> int:
        return sum(len(e) for e in self.errors.values())


def era(agent_index: int) -> str:
    """Even agents speak the handshake era (sessions), odd ones the modern sessionless era."""
    return "legacy" if agent_index % 2 == 0 else "auto"


async def add_agents(daemon: RunningDaemon, names: list[str]) -> dict[str, str]:
    """Create agents as `memos agent add` does, in one process (one CLI start per agent takes ~1 s), all in
    one group so they can name one another."""
    config = load_config(daemon.config_path, environ=daemon.env)
    tokens: dict[str, str] = {}
    async with open_store_services(config) as services:
        if "soak" not in await services.groups.list():
            await services.groups.add("soak")
        for name in names:
            tokens[name] = (await services.identities.add(name))[1]
            await services.groups.add_member("soak", name)
    return tokens


async def wait_for_model(url: str, token: str) -> None:
    """Return once the daemon's model is loaded, so writes and searches are measured with embedding."""
    async with mcp_client(url, token) as client:
        await wait_until_hybrid(client)


async def prepare(url: str, tokens: dict[str, str], ledger: Ledger) -> None:
    """The first agent creates the shared cube, lets every agent write to it and stores the counter."""
    owner = next(iter(tokens))
    async with mcp_client(url, tokens[owner]) as client:
        await call(client, "cube_create", {"name": SHARED_CUBE, "description": "soak test"})
        await call(client, "cube_share", {"cube": SHARED_CUBE, "grantee": "*", "permission": "write"})
        added = await call(client, "memory_add", {"content": f"{COUNTER_PREFIX}0", "cube": SHARED_CUBE})
        ledger.counter_id = added["id"]


class Agent:
    """One agent's loop: random operations until the deadline, each recorded in the ledger."""

    def __init__(self, name: str, names: list[str], client: Client, ledger: Ledger, seed: int) -> None:
        self.name = name
        self.others = [n for n in names if n != name]
        self.client = client
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.texts = memories(2000, seed=seed)
        self.questions = queries(200, seed=seed)
        self.mine: list[str] = []  # ids of memories in the agent's own cube
        self.count = 0

    async def run(self, deadline: float) -> None:
        ops, weights = list(WEIGHTS), list(WEIGHTS.values())
        while time.monotonic() < deadline:
            op = self.rng.choices(ops, weights)[0]
            started = time.perf_counter()
            try:
                done = await getattr(self, f"op_{op}")(deadline)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded and reported, none ignored
                self.ledger.errors[op].append(f"{self.name}: {type(exc).__name__}: {exc}")
                continue
            if done:
                self.ledger.latencies[op].append(time.perf_counter() - started)

    def _text(self) -> str:
        self.count += 1
        return f"{self.texts[self.count % len(self.texts)]} [{self.name} #{self.count}]"

    async def op_add(self, deadline: float) -> bool:
        content = self._text()
        added = await call(self.client, "memory_add", {"content": content})
        self.ledger.writes[added["id"]] = (self.name, content)
        self.mine.append(added["id"])
        return True

    async def op_add_shared(self, deadline: float) -> bool:
        content = self._text()
        added = await call(self.client, "memory_add", {"content": content, "cube": SHARED_CUBE})
        self.ledger.writes[added["id"]] = (self.name, content)
        return True

    async def op_update(self, deadline: float) -> bool:
        if not self.mine:
            return await self.op_add(deadline)
        memory_id = self.rng.choice(self.mine)
        content = f"updated: {self._text()}"
        await call(self.client, "memory_update", {"id": memory_id, "content": content})
        self.ledger.writes[memory_id] = (self.name, content)
        return True

    async def op_increment(self, deadline: float) -> bool:
        """Read, add one, write back only if nobody wrote in between; retry on a conflict."""
        counter = self.ledger.counter_id
        while time.monotonic() < deadline:
            current = await call(self.client, "memory_get", {"id": counter})
            value = int(current["content"].removeprefix(COUNTER_PREFIX))
            arguments = {
                "id": counter,
                "content": f"{COUNTER_PREFIX}{value + 1}",
                "expected_version": current["version"],
            }
            result = await self.client.call_tool("memory_update", arguments)
            if not result.is_error:
                self.ledger.increments += 1
                return True
            message = result.content[0].text  # type: ignore[union-attr]
            if not message.startswith("Conflict:"):
                raise ToolFailed(f"memory_update: {message}")
            self.ledger.conflicts += 1
            await anyio.sleep(self.rng.uniform(0, 0.05))  # so the losers of one round do not collide again
        return False

    async def op_search(self, deadline: float) -> bool:
        query = self.rng.choice(self.questions)
        await call(self.client, "memory_search", {"query": query, "k": 10})
        return True

    async def op_list(self, deadline: float) -> bool:
        await call(self.client, "memory_list", {"limit": 20})
        return True

    async def op_get(self, deadline: float) -> bool:
        if not self.mine:
            return await self.op_add(deadline)
        await call(self.client, "memory_get", {"id": self.rng.choice(self.mine)})
        return True

    async def op_share(self, deadline: float) -> bool:
        grantee = self.rng.choice(self.others)
        cube = f"@{self.name}"
        await call(self.client, "cube_share", {"cube": cube, "grantee": grantee, "permission": "read"})
        self.ledger.grants.add((cube, grantee))
        return True


async def run_workload(url: str, tokens: dict[str, str], seconds: float, seed: int = 0) -> Ledger:
    """Run every agent for `seconds` on its own connection; returns the ledger of what was acknowledged."""
    ledger = Ledger()
    await prepare(url, tokens, ledger)
    names = list(tokens)

    async def one(index: int, name: str, deadline: float) -> None:
        async with mcp_client(url, tokens[name], era(index)) as client:
            await Agent(name, names, client, ledger, seed * 1000 + index).run(deadline)

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for index, name in enumerate(names):
            tg.start_soon(one, index, name, started + seconds)
    ledger.seconds = time.monotonic() - started
    return ledger


async def verify(url: str, tokens: dict[str, str], ledger: Ledger) -> list[str]:
    """What is wrong after the run: a lost increment, an acknowledged write not readable, a missing grant."""
    problems: list[str] = []
    by_agent: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for memory_id, (agent, content) in ledger.writes.items():
        by_agent[agent].append((memory_id, content))
    grants_by_grantee: dict[str, set[str]] = defaultdict(set)
    for cube, grantee in ledger.grants:
        grants_by_grantee[grantee].add(cube)

    async def check_agent(name: str) -> None:
        async with mcp_client(url, tokens[name]) as client:
            for memory_id, content in by_agent[name]:
                result = await client.call_tool("memory_get", {"id": memory_id})
                if result.is_error:
                    problems.append(f"{name} cannot read {memory_id}: {result.content[0].text}")  # type: ignore[union-attr]
                elif result.structured_content["content"] != content:  # type: ignore[index]
                    problems.append(f"{memory_id} lost a write by {name}: {content!r}")
            if grants_by_grantee[name]:
                readable = {c["name"] for c in (await call(client, "cube_list", {}))["cubes"]}
                missing = grants_by_grantee[name] - readable
                if missing:
                    problems.append(f"{name} cannot read cubes shared with it: {sorted(missing)}")

    async with anyio.create_task_group() as tg:
        for name in tokens:
            tg.start_soon(check_agent, name)

    async with mcp_client(url, tokens[next(iter(tokens))]) as client:
        counter = await call(client, "memory_get", {"id": ledger.counter_id})
        history = await call(client, "memory_history", {"id": ledger.counter_id})
    value = int(counter["content"].removeprefix(COUNTER_PREFIX))
    if value != ledger.increments:
        problems.append(f"the counter is {value} after {ledger.increments} acknowledged increments")
    if counter["version"] != ledger.increments + 1 or len(history["versions"]) != ledger.increments + 1:
        problems.append(
            f"the counter is at version {counter['version']} with {len(history['versions'])} versions"
            f" after {ledger.increments} acknowledged increments"
        )
    return problems


def log_problems(log: str) -> list[str]:
    """Lines of the daemon's log that show trouble: errors, tracebacks, a locked database."""
    problems = []
    for line in log.splitlines():
        try:
            level = json.loads(line).get("level")
        except ValueError:
            level = None
        if level in ("error", "critical") or "database is locked" in line or "Traceback" in line:
            problems.append(line)
    return problems


def report(ledger: Ledger, agents: int, rss: dict[str, float] | None = None) -> str:
    """A markdown table: per operation its count, errors and latency; then totals and daemon memory."""
    lines = ["| operation | ops | errors | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for op in WEIGHTS:
        lat = ledger.latencies.get(op, [])
        p50 = f"{percentile(lat, 50) * 1000:.1f}" if lat else "-"
        p99 = f"{percentile(lat, 99) * 1000:.1f}" if lat else "-"
        lines.append(f"| {op} | {len(lat)} | {len(ledger.errors.get(op, []))} | {p50} | {p99} |")
    total = sum(len(v) for v in ledger.latencies.values())
    lines.append("")
    lines.append(
        f"{agents} agents, {ledger.seconds:.0f} s, {total} operations ({total / max(ledger.seconds, 1e-9):.1f}/s),"
        f" {ledger.error_count} errors; counter: {ledger.increments} acknowledged increments,"
        f" {ledger.conflicts} conflicts retried."
    )
    if rss:
        lines.append(
            f"Daemon RSS: {rss['start']:.0f} MiB at the start, {rss['end']:.0f} MiB at the end,"
            f" peak {rss['peak']:.0f} MiB."
        )
    return "\n".join(lines)


async def soak(seconds: float, agents: int, model: str) -> tuple[str, bool]:
    """A fresh daemon, `agents` agents for `seconds`; returns the report and whether all was well."""
    with tempfile.TemporaryDirectory(prefix="memos-soak-") as tmp:
        home = Path(tmp)
        port = free_port()
        daemon = start_daemon(write_config(home, port=port, model=model), home, port)
        try:
            tokens = await add_agents(daemon, [f"agent-{i:02d}" for i in range(agents)])
            if model != "none":
                await wait_for_model(daemon.url, tokens["agent-00"])
            rss = {"start": rss_mib(daemon.process.pid)[0]}
            ledger = await run_workload(daemon.url, tokens, seconds)
            rss["end"], rss["peak"] = rss_mib(daemon.process.pid)
            problems = await verify(daemon.url, tokens, ledger) + log_problems(daemon.log())
        finally:
            stop_daemon(daemon)
    text = report(ledger, agents, rss)
    for op, errors in ledger.errors.items():
        text += f"\n\nErrors in {op} (first 5 of {len(errors)}):\n" + "\n".join(f"- {e}" for e in errors[:5])
    if problems:
        text += "\n\nProblems found afterwards:\n" + "\n".join(f"- {p}" for p in problems[:20])
    return text, not problems and not ledger.error_count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="how long to run (default 1)")
    length.add_argument("--seconds", type=float, help="how long to run, in seconds")
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="local model dir, or none")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes or 1)
    text, ok = anyio.run(soak, seconds, args.agents, args.model)
    out = f"Machine: {machine()}\n\n{text}\n"
    print(out)
    results = RESULTS
    results.mkdir(exist_ok=True)
    (results / "soak.md").write_text(out, encoding="utf-8")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
