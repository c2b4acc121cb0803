"""Server time of each dashboard page at N memories, from the `Server-Timing` header memosd sends.

    python bench/ui.py                    # N = 10k then 100k
    python bench/ui.py --sizes 10000 --repeats 10

One cube holds all N memories (the worst case for a cube's page), spread over a year, with kinds and tags
mixed, 2% deleted and 2% superseded. They are written with `memos import` (JSONL, batches of 500) into a
database served by memosd without a model (the pages do not depend on it; search is lexical). Each page is
asked once (the first time: cold) and then `--repeats` times; the table shows the first, the median and
the slowest, in milliseconds of server time (the handler from the request arriving to the response being ready). The target is 200 ms.
Written to bench/results/ui.md.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import memories
from bench.report import RESULTS, Row, load_average, machine, table
from tests.conftest import free_port, memos_at, start_daemon, stop_daemon, write_config

KINDS = ["fact", "preference", "event", "procedure", "note", "message"]
TAGS = ["ops", "people", "planning", "release", "infra", "docs", "incident", "social"]
TARGET_MS = 200.0


def seed(path: Path, start: int, count: int) -> None:
    """`count` JSONL memories for the cube `big`, numbered from `start`, a year of creation times."""
    rng = random.Random(start)
    texts = memories(count, seed=start + 1)
    first = time.time() - 365 * 86400
    with path.open("w", encoding="utf-8") as out:
        for i, text in enumerate(texts, start=start):
            when = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(first + i * 365 * 86400 / 200_000))
            record = {
                "id": f"mem_{i:016x}", "content": text, "cube": "big", "cube_owner": "bench",
                "kind": KINDS[i % len(KINDS)], "tags": rng.sample(TAGS, 2),
                "source_agent": ["bench", "other"][i % 2], "created_at": when, "updated_at": when,
            }  # fmt: skip
            if i % 50 == 7:
                record["deleted_at"] = when
            if i % 50 == 13:
                record["superseded_by"] = f"mem_{i + 1:016x}"
                record["valid_to"] = when
            out.write(json.dumps(record) + "\n")


def server_ms(response: httpx2.Response) -> float:
    found = re.fullmatch(r"app;dur=([\d.]+)", response.headers.get("server-timing", ""))
    assert response.status_code == 200 and found, (response.status_code, response.text[:300])
    return float(found.group(1))


def measure(http: httpx2.Client, pages: dict[str, str], repeats: int) -> list[Row]:
    rows = []
    for name, path in pages.items():
        first = server_ms(http.get(path))  # cold: the chart's first count of the cube, caches, templates
        times = [server_ms(http.get(path)) for _ in range(repeats)]
        rows.append(
            {"page": name, "first ms": first, "median ms": statistics.median(times), "max ms": max(times)}
        )
    return rows


def sign_in(http: httpx2.Client, token: str) -> None:
    form = http.get("/ui/sign-in").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    assert http.post("/ui/sign-in", data={"csrf": csrf.group(1), "token": token}).status_code == 303


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    report = [f"Machine: {machine()}", ""]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        config = write_config(home, port=free_port(), model="none")
        token = memos_at(config, "agent", "add", "bench").stdout.strip().splitlines()[-1]
        memos_at(config, "agent", "add", "other")
        loaded = 0
        for size in sorted(args.sizes):
            began = time.perf_counter()
            source = home / f"seed-{size}.jsonl"
            seed(source, loaded, size - loaded)
            memos_at(config, "import", str(source))
            print(
                f"imported {size - loaded} memories in {time.perf_counter() - began:.0f} s", file=sys.stderr
            )
            loaded = size
            port = int(re.search(r"port = (\d+)", config.read_text()).group(1))  # type: ignore[union-attr]
            daemon = start_daemon(config, home, port)
            try:
                with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                    sign_in(http, token)
                    cold = http.get("/ui/cubes/big")  # the chart's first count of the whole cube
                    cursor = re.search(r"cursor=(c\d+)", cold.text)
                    memory = f"mem_{size // 2:016x}"
                    pages = {
                        "cubes": "/ui/cubes",
                        "cube (first page, chart, members)": "/ui/cubes/big",
                        "cube, next page": f"/ui/cubes/big?cursor={cursor.group(1) if cursor else ''}",
                        "cube, kind = procedure": "/ui/cubes/big?kind=procedure",
                        "cube, tag = incident": "/ui/cubes/big?tag=incident",
                        "cube, by agent, since": "/ui/cubes/big?agent=other&since=2026-06-01",
                        "cube, with deleted and superseded": "/ui/cubes/big?show=deleted&show=superseded",
                        "memory (history, links)": f"/ui/memories/{memory}",
                        "search, common words (lexical, 20 results)": "/ui/search?q=release+planning+decision",
                        "search, a name and a project (lexical)": "/ui/search?q=what+did+Priya+say+about+ember",
                        "tasks": "/ui/tasks",
                        "audit": "/ui/audit",
                        "health": "/ui/health",
                    }
                    rows = measure(http, pages, args.repeats)
                    rows.insert(
                        0,
                        {"page": "cube, first view after start", "first ms": server_ms(cold),
                         "median ms": None, "max ms": None},
                    )  # fmt: skip
            finally:
                stop_daemon(daemon)
            worst = max(max(row["max ms"] or 0.0, row["first ms"]) for row in rows)
            report += [
                f"## {size:,} memories in one cube",
                "",
                table(rows),
                "",
                f"Slowest page: {worst:.1f} ms (target {TARGET_MS:.0f} ms); load average {load_average()}.",
                "",
            ]
            print("\n".join(report[-6:]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ui.md").write_text("# Dashboard server time\n\n" + "\n".join(report), encoding="utf-8")


if __name__ == "__main__":
    main()
