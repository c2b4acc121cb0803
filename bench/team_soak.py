"""Team soak: two memosd on one PostgreSQL database, agents writing through both, one daemon SIGKILLed now
and then.

    python bench/team_soak.py                         # 2 daemons x 8 agents for 1 minute, a kill every 15 s
    python bench/team_soak.py --seconds 300 --kill-every 20 --model ../shared/models/all-MiniLM-L6-v2-onnx

A real server (tests/pg_server.py) and a fresh database; two daemons (A, B) on two loopback ports. Each agent
adds memories, each with a word of its own, through A or B in turn (through B while A is down); after each
acknowledged add it searches for that word through the other daemon (on a session it keeps open) until
it is found, and records how long that took. Every `--kill-every` seconds A is SIGKILLed and started again. At the end every
acknowledged write must be there (read back through both daemons), every cross-daemon search must have
found its write on its first try (visible at once) or within a second, and the retention turn must have been taken once (at the first start:
restarts and the second daemon within the interval leave it alone). Prints a markdown summary (also
written to bench/results/team_soak.md); exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.client import ToolFailed, call
from bench.report import RESULTS, load_average, machine, percentile
from bench.soak import add_agents
from tests.conftest import RunningDaemon, free_port, mcp_client, start_daemon, stop_daemon, write_config
from tests.pg_server import PgCluster


@dataclass
class Team:
    daemons: list[RunningDaemon]
    up: list[bool]
    acked: dict[str, str] = field(default_factory=dict)  # memory id -> content
    delays: list[float] = field(default_factory=list)  # seconds until the other daemon found a write
    late: list[str] = field(default_factory=list)
    at_once: int = 0  # cross-daemon searches that found the write on their first try
    failed_calls: int = 0
    kills: int = 0


async def agent(team: Team, name: str, token: str, stop: anyio.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        word, content = f"zq{name}x{n}", f"{name} note {n}"
        through = n % 2 if team.up[0] else 1
        other = 1 - through
        acked = False
        try:
            # The other daemon's session is open before the add, so the delay measured is the search's own.
            async with AsyncExitStack() as stack:
                reader = None
                if team.up[other]:
                    reader = await stack.enter_async_context(mcp_client(team.daemons[other].url, token))
                async with mcp_client(team.daemons[through].url, token) as writer:
                    added = await call(writer, "memory_add", {"content": f"{content}: {word}"})
                team.acked[added["id"]] = f"{content}: {word}"
                acked = True
                if reader is None:
                    continue
                written, tries = time.monotonic(), 0
                while True:
                    found = await call(reader, "memory_search", {"query": word, "mode": "lexical"})
                    if found["results"]:
                        team.delays.append(time.monotonic() - written)
                        team.at_once += tries == 0
                        break
                    tries += 1
                    if time.monotonic() - written > 10:
                        team.late.append(word)
                        break
                    await anyio.sleep(0.02)
        except Exception:  # noqa: BLE001 - a daemon killed mid-call (any transport error)
            if not acked:  # not acknowledged: nothing to check
                team.failed_calls += 1
            await anyio.sleep(0.2)


async def killer(team: Team, every: float, stop: anyio.Event) -> None:
    while not stop.is_set():
        with anyio.move_on_after(every):
            await stop.wait()
        if stop.is_set():
            return
        first = team.daemons[0]
        team.up[0] = False
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        team.kills += 1
        team.daemons[0] = await anyio.to_thread.run_sync(
            start_daemon, first.config_path, first.home, first.port
        )
        team.up[0] = True


def retention_turn(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'turn:retention'").fetchone()
    return row[0] if row else None


async def check_all(team: Team, tokens: dict[str, str]) -> list[str]:
    """Every acknowledged memory, read back through each daemon by its owner."""
    missing = []
    owner_of = {content: content.split(" note ")[0] for content in team.acked.values()}
    for daemon in team.daemons:
        for memory_id, content in team.acked.items():
            name = owner_of[content]
            async with mcp_client(daemon.url, tokens[name]) as client:
                try:
                    got = await call(client, "memory_get", {"id": memory_id})
                except ToolFailed as exc:
                    missing.append(f"{memory_id} through {daemon.port}: {exc}")
                    continue
            if got["content"] != content:
                missing.append(f"{memory_id} through {daemon.port}: {got['content']!r}")
    return missing


async def team_soak(seconds: float, agents: int, kill_every: float, model: str) -> tuple[str, bool]:
    with PgCluster.start() as cluster, cluster.database() as url:
        daemons = []
        try:
            for name in ("a", "b"):
                home = Path(tempfile.mkdtemp(prefix=f"memos-team-soak-{name}-"))
                port = free_port()
                config = write_config(home, port=port, model=model, url=url)
                daemons.append(start_daemon(config, home, port))
            turn = retention_turn(url)
            names = [f"agent{i}" for i in range(agents)]
            tokens = await add_agents(daemons[0], names)
            team = Team(daemons, [True, True])
            stop = anyio.Event()
            load = load_average()
            async with anyio.create_task_group() as tg:
                for name in names:
                    tg.start_soon(agent, team, name, tokens[name], stop)
                tg.start_soon(killer, team, kill_every, stop)
                await anyio.sleep(seconds)
                stop.set()
            missing = await check_all(team, tokens)
            turns_taken = retention_turn(url) != turn
        finally:
            for running in daemons:
                stop_daemon(running)
                shutil.rmtree(running.home, ignore_errors=True)
    within = sum(delay <= 1.0 for delay in team.delays)
    # Visible at once: the first search through the other daemon, sent after the ack, found the write (its
    # delay is then that one search's latency, which the machine's load sets, not the propagation).
    visible = team.at_once == len(team.delays) or within == len(team.delays)
    ok = not missing and not team.late and visible and not turns_taken and bool(team.acked)
    lines = [
        f"# Team soak: 2 daemons x {agents} agents, {seconds:.0f} s, daemon A SIGKILLed every {kill_every:.0f} s",
        "",
        f"{machine()}; load average {load}",
        "",
        "| check | result |",
        "|---|---|",
        f"| acknowledged writes | {len(team.acked)} |",
        f"| acknowledged writes missing afterwards (read through both daemons) | {len(missing)} |",
        f"| calls that failed (daemon killed; not acknowledged, retried) | {team.failed_calls} |",
        f"| SIGKILLs of daemon A | {team.kills} |",
        f"| cross-daemon searches that found the write on their first try | {team.at_once} of {len(team.delays)} |",
        f"| cross-daemon searches that found the write within 1 s | {within} of {len(team.delays)} |",
        f"| cross-daemon visibility p50 / p99 / max ms | {percentile(team.delays, 50) * 1000:.0f} /"
        f" {percentile(team.delays, 99) * 1000:.0f} / {max(team.delays, default=0) * 1000:.0f} |",
        f"| retention turns taken after the first start (restarts, second daemon) | {int(turns_taken)} |",
        f"| verdict | {'pass' if ok else 'FAIL'} |",
    ]
    lines += [f"- missing: {problem}" for problem in missing[:20]]
    return "\n".join(lines) + "\n", ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--kill-every", type=float, default=15)
    parser.add_argument("--model", default="none", help="a local model dir, or none (lexical)")
    args = parser.parse_args()
    out, ok = anyio.run(team_soak, args.seconds, args.agents, args.kill_every, args.model)
    print(out)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "team_soak.md").write_text(out, encoding="utf-8")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
