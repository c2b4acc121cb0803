"""Server time of each dashboard page at N memories, from the `Server-Timing` header memosd sends.

    python bench/ui.py                    # N = 10k then 100k
    python bench/ui.py --sizes 10000 --repeats 10

One cube holds all N memories (the worst case for a cube's page), spread over a year, with kinds and tags
mixed, 2% deleted and 2% superseded. They are written with `memos import` (JSONL, batches of 500) into a
database served by memosd without a model (the pages do not depend on it; search is lexical). Each page is
asked once (the first time: cold) and then `--repeats` times; the table shows the first, the median and
the slowest, in milliseconds of server time (the handler from the request arriving to the response being ready). The target is 200 ms.
Written to bench/results/ui.md.

    python bench/ui.py --home COPY [--model DIR|none]

measures instead a database filled by `bench/seed.py` (e.g. a `cp -a` of
/work/bench-cache/load-db/many-matches-100000: bench/ui.py copies it once more and never changes the one it
is given): the agent `bench` and its cube `@bench`, searched with that corpus's questions, with the model by
default (hybrid search, as people use it). Each row also gives memosd's CPU time per request (user + system,
all threads, from /proc), which a busy machine inflates far less than the wall clock, and for search the
part of the page's time that `memory_search` itself took (the page's `Server-Timing: search;dur=`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote_plus

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.client import DEFAULT_MODEL
from bench.corpus import memories, note_queries
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


def timings(response: httpx2.Response) -> dict[str, float]:
    """The parts of the response's `Server-Timing` header: app (the whole page), search (its search)."""
    assert response.status_code == 200, (response.status_code, response.text[:300])
    found = dict(re.findall(r"(\w+);dur=([\d.]+)", response.headers.get("server-timing", "")))
    assert "app" in found, response.headers
    return {name: float(value) for name, value in found.items()}


def server_ms(response: httpx2.Response) -> float:
    return timings(response)["app"]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(http: httpx2.Client, pages: dict[str, str], repeats: int, pid: int | None = None) -> list[Row]:
    rows = []
    for name, path in pages.items():
        first = server_ms(http.get(path))  # cold: the chart's first count of the cube, caches, templates
        before = cpu_s(pid) if pid else 0.0
        measured = [timings(http.get(path)) for _ in range(repeats)]
        cpu = (cpu_s(pid) - before) * 1000 / repeats if pid else None
        times = [t["app"] for t in measured]
        row: Row = {
            "page": name,
            "first ms": first,
            "median ms": statistics.median(times),
            "max ms": max(times),
        }
        if pid:
            row["memosd CPU ms"] = cpu
            searched = [t["search"] for t in measured if "search" in t]
            row["of which search, median ms"] = statistics.median(searched) if searched else None
        rows.append(row)
    return rows


def sign_in(http: httpx2.Client, token: str) -> None:
    form = http.get("/ui/sign-in").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    assert http.post("/ui/sign-in", data={"csrf": csrf.group(1), "token": token}).status_code == 303


def burst(port: int, token: str, questions: list[str], clients: int, seconds: float) -> Row:
    """`clients` people searching at once through the search page for `seconds`: its server time then."""
    times: list[float] = []
    searched: list[float] = []
    stop = time.monotonic() + seconds

    def person(offset: int) -> None:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            sign_in(http, token)
            i = offset
            while time.monotonic() < stop:
                parts = timings(http.get("/ui/search", params={"q": questions[i % len(questions)]}))
                times.append(parts["app"])
                searched.append(parts["search"])
                i += clients

    threads = [threading.Thread(target=person, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "page": f"search, {clients} {'person' if clients == 1 else 'people'} at once for {seconds:.0f} s"
        f" ({len(times)} searches)",
        "first ms": None, "median ms": statistics.median(times), "max ms": max(times),
        "memosd CPU ms": None, "of which search, median ms": statistics.median(searched),
    }  # fmt: skip


def shoot_health(port: int, token: str, path: Path) -> None:
    """A screenshot of the health page after the run (Debian's chromium, as tests/test_ui_browser.py)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                     "--hide-scrollbars", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/ui/sign-in")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        driver.get(f"http://127.0.0.1:{port}/ui/health")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(int(height), 700), 1400))
        assert driver.save_screenshot(str(path))
    finally:
        driver.quit()


def seeded_home(
    given: Path, model: str, repeats: int, people: list[int], screenshot: Path | None = None
) -> list[str]:
    """Measure a `bench/seed.py` database (a copy of it): its size, its cube `@bench`, its corpus's questions."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(given, home, symlinks=True)
        (home / "data" / "memos.db.lock").unlink(missing_ok=True)
        port = free_port()
        config = write_config(home, port=port, model=model)
        token = (home / "token").read_text(encoding="utf-8").strip()
        size = int((home / "loaded").read_text().strip()) if (home / "loaded").exists() else 0
        daemon = start_daemon(config, home, port)
        try:
            with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                sign_in(http, token)
                deadline = time.monotonic() + 120
                while model != "none" and "pill ok" not in http.get("/ui/health").text:
                    assert time.monotonic() < deadline, "the model never became ready"
                    time.sleep(0.5)
                cold = http.get("/ui/cubes/@bench")
                cursor = re.search(r"cursor=(c\d+)", cold.text)
                memory = re.search(r"/ui/memories/(mem_\w+)", cold.text)
                assert memory, cold.text[:500]
                asked = note_queries(2)
                mode = "lexical" if model == "none" else "hybrid"
                pages = {
                    "cubes": "/ui/cubes",
                    "cube (first page, chart, members)": "/ui/cubes/@bench",
                    "cube, next page": f"/ui/cubes/@bench?cursor={cursor.group(1) if cursor else ''}",
                    "cube, kind = procedure (none: 5,000 looked at)": "/ui/cubes/@bench?kind=procedure",
                    "cube, with deleted and superseded": "/ui/cubes/@bench?show=deleted&show=superseded",
                    "memory (history, links)": f"/ui/memories/{memory.group(1)}",
                    f"search ({mode}): {asked[0]}": f"/ui/search?q={quote_plus(asked[0])}",
                    f"search ({mode}): {asked[1]}": f"/ui/search?q={quote_plus(asked[1])}",
                    "search (lexical): decided review service": "/ui/search?q=decided+review+service&mode=lexical",
                    "tasks": "/ui/tasks",
                    "audit": "/ui/audit",
                    "health (with the charts)": "/ui/health",
                }
                rows = measure(http, pages, repeats, daemon.process.pid)
                for clients in people:
                    rows.append(burst(port, token, note_queries(200, seed=3), clients=clients, seconds=60))
                if screenshot is not None:
                    shoot_health(port, token, screenshot)
                rows.insert(
                    0,
                    {"page": "cube, first view after start", "first ms": server_ms(cold), "median ms": None,
                     "max ms": None, "memosd CPU ms": None, "of which search, median ms": None},
                )  # fmt: skip
        finally:
            stop_daemon(daemon)
    worst = max(row["median ms"] or 0.0 for row in rows)
    return [
        f"## {size:,} memories (`bench/seed.py`, {given.name}), model: {'none' if model == 'none' else 'MiniLM'}",
        "",
        table(rows),
        "",
        f"Slowest median: {worst:.1f} ms (target {TARGET_MS:.0f} ms); load average {load_average()}.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--home", type=Path, help="a bench/seed.py home to measure (copied, never changed)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="with --home: a model dir, or none")
    parser.add_argument("--screenshot", type=Path, help="with --home: save the health page here at the end")
    parser.add_argument(
        "--people",
        type=int,
        nargs="*",
        default=[2, 8],
        help="with --home: a minute of searching at once for each",
    )
    args = parser.parse_args()
    if args.home:
        report = [
            f"Machine: {machine()}", "", *seeded_home(args.home, args.model, args.repeats, args.people, args.screenshot)
        ]  # fmt: skip
        print("\n".join(report))
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "ui-seeded.md").write_text(
            "# Dashboard server time\n\n" + "\n".join(report), encoding="utf-8"
        )
        return
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
