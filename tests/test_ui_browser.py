"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium, against memosd as a real
process with the real model. Selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver, so Selenium
Manager never runs and nothing is downloaded.

Screenshots of the main pages go to $MEMOS_UI_SCREENSHOTS when set (`MEMOS_UI_SCREENSHOTS=docs` refreshes
docs/ui-*.png), else to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import RunningDaemon, mcp_client
from tests.ui_client import UiClient, staff_agent

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

SEED = [
    ("fact", ["people"], "Dana leads the data platform team and prefers written proposals over meetings"),
    ("preference", ["tea"], "Alice drinks green tea every morning, never coffee"),
    (
        "event",
        ["release"],
        "Release 2.4 shipped on a Thursday after the schema migration was rehearsed twice",
    ),
    ("procedure", ["ops"], "To rotate the on-call pager, update the schedule and post in #ops-handover"),
    ("fact", ["infra"], "Production database backups run nightly at 02:00 UTC and are kept for 14 days"),
    ("note", ["planning"], "The Q3 roadmap review moved to the large meeting room on the third floor"),
    ("event", ["incident"], "The search latency incident was caused by an unindexed tag filter"),
    ("preference", ["docs"], "Bob wants design documents to start with the decision, then the reasons"),
    ("fact", ["people"], "Eve joined the security team and owns the quarterly access review"),
    ("note", ["planning"], "The offsite is planned for the first week of October in Lisbon"),
]


@pytest.fixture(scope="module")
def seeded(daemon: RunningDaemon, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Agents alice, bob and carol (group staff); a cube `team` owned by alice, shared with bob (write) and
    staff (read), with memories recorded over ten weeks (imported, so their times are kept)."""
    tokens = {name: staff_agent(daemon, name) for name in ("alice", "bob", "carol")}
    start = datetime(2026, 9, 1, 9, 0, tzinfo=timezone.utc)
    lines = []
    for i in range(60):
        kind, tags, content = SEED[i % len(SEED)]
        when = (start + timedelta(days=i * 1.2 + (i % 3))).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        lines.append({
            "content": content if i < len(SEED) else f"{content} (note {i})", "cube": "team",
            "cube_owner": "alice", "cube_description": "What the team knows", "kind": kind, "tags": tags,
            "source_agent": ["alice", "bob"][i % 2], "created_at": when, "updated_at": when,
        })  # fmt: skip
    source = tmp_path_factory.mktemp("seed") / "team.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    daemon.memos("import", str(source))
    with UiClient(daemon.port) as alice:  # imported memories are embedded by the daemon's backfill
        alice.sign_in(tokens["alice"])
        for grantee, permission in (("bob", "write"), ("group:staff", "read")):
            shared = alice.post("/ui/cubes/team/share", {"grantee": grantee, "permission": permission})
            assert shared.status_code == 303, shared.text
        deadline = time.monotonic() + 60
        while "sig-vector" not in alice.get("/ui/search", q="database backups", cube="team").text:
            assert time.monotonic() < deadline, "the imported memories were never embedded"
            time.sleep(0.2)
    return tokens


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1280,1000", "--hide-scrollbars", "--force-device-scale-factor=1",
    ):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("MEMOS_UI_SCREENSHOTS")
    return Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")


def shoot(driver: WebDriver, folder: Path, name: str) -> None:
    """A full-page screenshot: the window grown to the page's height for the shot."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height), 700), 1400))
    path = folder / f"ui-{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    driver.set_window_size(1280, 1000)


def sign_in(driver: WebDriver, port: int, token: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"http://127.0.0.1:{port}/ui/sign-in")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/ui/cubes"))


def wait_until(driver: WebDriver, check: Callable[[], bool], timeout: float = 30) -> None:
    """Waits for check() to hold; an element read while its page is being replaced counts as not yet."""

    def attempt(_: WebDriver) -> bool:
        try:
            return check()
        except StaleElementReferenceException:
            return False
        except WebDriverException as error:
            # Chromium reports a read of a node whose document a form's redirect is replacing this way, not as
            # a stale element.
            if "does not belong to the document" in (error.msg or ""):
                return False
            raise

    WebDriverWait(driver, timeout).until(attempt)


def task_row(driver: WebDriver, title: str) -> str:
    return next((r.text for r in driver.find_elements(By.CSS_SELECTOR, "#tasks tr") if title in r.text), "")


def searches_charted(driver: WebDriver) -> int:
    found = re.search(r"(\d+) searches", driver.find_element(By.ID, "latency").text)
    return int(found.group(1)) if found else 0


def column(driver: WebDriver, n: int) -> set[str]:
    """The texts of the n-th column (1-based) of the cube page's memories."""
    cells = driver.find_elements(By.CSS_SELECTOR, f"#memories tbody tr td:nth-child({n})")
    assert cells, "no memories listed"
    return {cell.text for cell in cells}


def wait_for_text(driver: WebDriver, text: str, present: bool = True, timeout: float = 20) -> None:
    try:
        wait_until(
            driver, lambda: (text in driver.find_element(By.TAG_NAME, "body").text) == present, timeout
        )
    except TimeoutException:
        raise AssertionError(f"{text!r} {'never appeared' if present else 'never went away'}") from None


def test_sign_in_browse_and_search_shows_why_each_result_matched(
    browser: WebDriver, daemon: RunningDaemon, seeded: dict[str, str], shots: Path
) -> None:
    """Steps: sign in as alice; the cubes page lists her private cube and `team`; open `team` (its chart,
    members and memories); filter by kind; search and see each result's signals drawn as bars."""
    sign_in(browser, daemon.port, seeded["alice"])
    cubes = browser.find_element(By.ID, "cubes").text
    assert "@alice" in cubes and "team" in cubes and "60" in cubes
    team = next(r.text for r in browser.find_elements(By.CSS_SELECTOR, "#cubes tbody tr") if "team" in r.text)
    assert "alice admin (owner)" in team and "bob write (cube_share by alice)" in team
    shoot(browser, shots, "cubes")
    browser.find_element(By.LINK_TEXT, "team").click()
    wait_for_text(browser, "Who holds what")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.col")
    members = browser.find_element(By.ID, "members").text
    assert "owner" in members and "cube_share by alice" in members and "group:staff" in members
    assert len(browser.find_elements(By.CSS_SELECTOR, "#memories tbody tr")) == 25
    browser.find_element(By.ID, "next").click()
    wait_for_text(browser, "Older")
    assert "cursor=" in browser.current_url
    filters = browser.find_element(By.ID, "filters")  # the filter form, as a person uses it
    Select(filters.find_element(By.NAME, "kind")).select_by_visible_text("procedure")
    filters.find_element(By.CSS_SELECTOR, "button").click()
    WebDriverWait(browser, 10).until(lambda d: "kind=procedure" in d.current_url)
    assert column(browser, 2) == {"procedure"}
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/cubes/team?tag=incident")
    assert {"incident"} == {t for row in column(browser, 3) for t in row.split()}
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/cubes/team?agent=bob")
    assert column(browser, 4) == {"bob"}
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/cubes/team?since=2026-10-01&until=2026-10-15")
    days = {when[:10] for when in column(browser, 5)}
    assert days and all("2026-10-01" <= day < "2026-10-15" for day in days), days
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/cubes/team")
    shoot(browser, shots, "cube")

    browser.find_element(By.LINK_TEXT, "Search").click()
    box = browser.find_element(By.NAME, "q")
    box.send_keys("when were the database backups set up in September?")
    box.submit()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results li.hit"))
    assert "“in september” = 2026-09-01" in browser.find_element(By.ID, "summary").text  # the window named
    first = browser.find_element(By.CSS_SELECTOR, "#results li.hit")
    assert "backups run nightly" in first.text and "inside" in first.text
    bars = first.find_element(By.CSS_SELECTOR, "svg.bars").text
    assert "lexical" in bars and "vector" in bars and "time" in bars
    assert first.find_elements(By.CSS_SELECTOR, ".why mark")  # the query words it contains
    shoot(browser, shots, "search")


@pytest.mark.anyio
async def test_editing_a_memory_shows_the_change_in_its_history(
    browser: WebDriver, daemon: RunningDaemon, seeded: dict[str, str], shots: Path
) -> None:
    """Steps: alice adds a memory with the form, corrects it, supersedes it; the history shows the word diff
    and the chain links both ways; she deletes the new one (gone from the list, shown with deleted ones) and
    restores it; a link made over MCP appears on the open page without a reload, with the memory two links
    away in its neighbourhood and the memories naming the same place; her audit page lists every edit."""
    sign_in(browser, daemon.port, seeded["alice"])
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/cubes/team")
    browser.find_element(By.CSS_SELECTOR, "details summary").click()
    form = browser.find_element(By.ID, "add")
    form.find_element(By.NAME, "content").send_keys("The team lunch is on Fridays at noon in Lisbon Hall")
    form.find_element(By.NAME, "tags").send_keys("social")
    form.find_element(By.CSS_SELECTOR, "button").click()
    wait_for_text(browser, "Change it")
    assert (
        browser.find_element(By.ID, "content").text == "The team lunch is on Fridays at noon in Lisbon Hall"
    )
    edit = browser.find_element(By.ID, "edit")
    text = edit.find_element(By.NAME, "content")
    text.clear()
    text.send_keys("The team lunch is on Fridays at half past twelve in Lisbon Hall")
    edit.find_element(By.CSS_SELECTOR, "button").click()
    wait_for_text(browser, "v2")
    page = browser.page_source  # one snapshot: a live refresh may replace elements under a handle
    assert re.findall(r"<del>([^<]*)</del>", page) == ["noon"]
    assert re.findall(r"<ins>([^<]*)</ins>", page) == ["half past twelve"]
    memory_url = browser.current_url
    supersede = browser.find_element(By.ID, "supersede")
    supersede.find_element(By.NAME, "content").send_keys(
        "The team lunch moved to Thursdays at noon in Lisbon Hall"
    )
    supersede.find_element(By.CSS_SELECTOR, "button").click()
    wait_for_text(browser, "Replaces")
    assert (
        browser.find_element(By.ID, "content").text
        == "The team lunch moved to Thursdays at noon in Lisbon Hall"
    )
    successor = browser.current_url.rsplit("/", 1)[1]
    browser.get(memory_url)
    assert "Replaced by" in browser.find_element(By.ID, "chain").text

    browser.get(f"http://127.0.0.1:{daemon.port}/ui/memories/{successor}")
    browser.find_element(By.CSS_SELECTOR, "#delete button").click()
    wait_for_text(browser, "Restore")
    assert "deleted" in browser.find_element(By.CSS_SELECTOR, ".state").text
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/cubes/team")
    assert "moved to Thursdays" not in browser.find_element(By.ID, "memories").text
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/cubes/team?show=deleted")
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#memories tr") if "Thursdays" in r.text)
    assert "deleted" in row.text
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/memories/{successor}")
    browser.find_element(By.CSS_SELECTOR, "#restore button").click()
    wait_for_text(browser, "Delete")
    assert "current" in browser.find_element(By.CSS_SELECTOR, ".state").text

    with UiClient(daemon.port) as alice:
        alice.sign_in(seeded["alice"])
        venue = alice.add("team", "Lisbon Hall seats forty people and has a projector")
        booking = alice.add("team", "Dana books the rooms for the team every Monday")
    browser.execute_script("window.notReloaded = true")
    async with mcp_client(daemon.url, seeded["alice"]) as client:
        for source, target in ((successor, venue), (venue, booking)):
            result = await client.call_tool(
                "memory_link", {"from_id": source, "to_id": target, "relation": "relates_to"}
            )
            assert not result.is_error, result.content
    wait_for_text(browser, "2 away Dana books the rooms")  # after both links' events
    assert browser.execute_script("return window.notReloaded") is True
    around = browser.find_element(By.TAG_NAME, "main").text
    assert "relates_to →" in around and "1 away Lisbon Hall seats forty" in around
    assert "lisbon hall" in browser.find_element(By.ID, "shared").text  # the venue is named in both
    shoot(browser, shots, "memory")

    browser.find_element(By.LINK_TEXT, "Audit").click()
    audit = browser.find_element(By.ID, "audit").text
    for action in ("memory_add", "memory_update", "memory_delete", "memory_restore", "memory_link"):
        assert action in audit, action


def test_sharing_changes_another_agents_view_without_a_reload(
    browser: WebDriver, daemon: RunningDaemon, seeded: dict[str, str]
) -> None:
    """Steps: bob's cubes page is open; alice shares her private cube with bob and bob's page shows it
    without a reload; alice unshares it and it goes away; bob's open memory page follows an edit; then alice
    shares and unshares with the cube page's forms in the browser, and bob's reads follow."""
    alice = UiClient(daemon.port)
    try:
        alice.sign_in(seeded["alice"])
        private = alice.add("@alice", "Alice keeps her spare office key in the blue drawer")
        sign_in(browser, daemon.port, seeded["bob"])
        assert "@alice" not in browser.find_element(By.ID, "cubes").text
        browser.execute_script("window.notReloaded = true")
        assert (
            alice.post("/ui/cubes/@alice/share", {"grantee": "bob", "permission": "read"}).status_code == 303
        )
        wait_for_text(browser, "@alice")
        browser.get(f"http://127.0.0.1:{daemon.port}/ui/memories/{private}")
        wait_for_text(browser, "blue drawer")
        browser.execute_script("window.notReloaded = true")
        response = alice.post(
            f"/ui/memories/{private}/edit",
            {"content": "Alice keeps her spare office key in the red drawer"},
            csrf_from=f"/ui/memories/{private}",
        )
        assert response.status_code == 303
        wait_for_text(browser, "red drawer")
        assert browser.execute_script("return window.notReloaded") is True
        browser.get(f"http://127.0.0.1:{daemon.port}/ui/cubes")
        browser.execute_script("window.notReloaded = true")
        assert alice.post("/ui/cubes/@alice/unshare", {"grantee": "bob"}).status_code == 303
        wait_for_text(browser, "@alice", present=False)
        assert browser.execute_script("return window.notReloaded") is True
        browser.get(f"http://127.0.0.1:{daemon.port}/ui/memories/{private}")
        assert "red drawer" not in browser.page_source
        with UiClient(daemon.port) as bob:  # now alice shares and unshares with the page's own forms
            bob.sign_in(seeded["bob"])
            sign_in(browser, daemon.port, seeded["alice"])
            browser.get(f"http://127.0.0.1:{daemon.port}/ui/cubes/@alice")
            form = browser.find_element(By.ID, "share")
            form.find_element(By.NAME, "grantee").send_keys("bob")
            Select(form.find_element(By.NAME, "permission")).select_by_visible_text("read")
            form.find_element(By.CSS_SELECTOR, "button").click()
            wait_for_text(browser, "cube_share by alice")
            assert "red drawer" in bob.get(f"/ui/memories/{private}").text
            row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#members tr") if "bob" in r.text)
            row.find_element(By.CSS_SELECTOR, "button").click()
            wait_for_text(browser, "cube_share by alice", present=False)
            assert bob.get(f"/ui/memories/{private}").status_code == 404
    finally:
        alice.close()


def test_an_agents_session_never_shows_another_agents_private_memory(
    browser: WebDriver, daemon: RunningDaemon, seeded: dict[str, str]
) -> None:
    """Steps: carol writes a private memory; bob browses cubes, searches for its words and opens its URL;
    nothing of it appears, and its URL reads like a missing memory's."""
    carol = UiClient(daemon.port)
    try:
        carol.sign_in(seeded["carol"])
        secret = carol.add("@carol", "Carol's locker combination is 31-07-44", kind="fact")
    finally:
        carol.close()
    sign_in(browser, daemon.port, seeded["bob"])
    pages = [
        "/ui/cubes", "/ui/cubes/@carol", f"/ui/memories/{secret}", "/ui/search?q=Carol+locker+combination",
        "/ui/search?q=locker&mode=lexical", "/ui/tasks", "/ui/audit", "/ui/health",
    ]  # fmt: skip
    for path in pages:
        browser.get(f"http://127.0.0.1:{daemon.port}{path}")
        assert "31-07-44" not in browser.page_source, path
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/memories/{secret}")
    theirs = browser.find_element(By.CSS_SELECTOR, ".error").text
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/memories/mem_00000000deadbeef")
    missing = browser.find_element(By.CSS_SELECTOR, ".error").text
    assert theirs.replace(secret, "ID") == missing.replace("mem_00000000deadbeef", "ID")


def test_archived_memories_show_with_the_rule_that_archived_them(
    browser: WebDriver, daemon: RunningDaemon, seeded: dict[str, str]
) -> None:
    """Steps: bob keeps only his newest memory (max_count 1) and writes two; `memos cube retention` archives
    the older; his cube page lists it only with deleted and archived ones shown, marked archived, and its
    page names the rule."""
    with UiClient(daemon.port) as bob:
        bob.sign_in(seeded["bob"])
        older = bob.add("@bob", "Bob's first desk was by the window")
        bob.add("@bob", "Bob's desk is next to the printer now")
    daemon.memos("cube", "configure", "@bob", "--agent", "bob", "--max-count", "1")
    daemon.memos("cube", "retention", "@bob")
    sign_in(browser, daemon.port, seeded["bob"])
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/cubes/@bob")
    assert "first desk" not in browser.find_element(By.ID, "memories").text
    browser.find_element(By.CSS_SELECTOR, "#filters input[value=deleted]").click()
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    WebDriverWait(browser, 10).until(lambda d: "show=deleted" in d.current_url)
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#memories tr") if "first desk" in r.text)
    assert "archived" in row.text
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/memories/{older}")
    assert "beyond the newest max_count 1" in browser.find_element(By.ID, "archived").text


@pytest.mark.anyio
async def test_tasks_show_the_context_pack_as_the_receiver_sees_it(
    browser: WebDriver, daemon: RunningDaemon, seeded: dict[str, str], shots: Path
) -> None:
    """Steps: alice shares `team` with bob and hands him a task over MCP; bob's open tasks page follows it from
    pending to accepted to done without a reload, and filters by status; its page shows the pack built for
    bob; alice's view of the same task says only bob sees the pack; health shows the model, the queues and
    the search latency and queue depth charts, which take in new searches without a reload."""
    with UiClient(daemon.port) as alice:
        alice.sign_in(seeded["alice"])
        assert alice.post("/ui/cubes/team/share", {"grantee": "bob", "permission": "read"}).status_code == 303
    async with mcp_client(daemon.url, seeded["alice"]) as client:
        result = await client.call_tool(
            "task_handoff",
            {"to_agent": "bob", "title": "Prepare the Q3 roadmap review", "cubes": ["team"],
             "notes": "Dana prefers written proposals; start from the planning notes."},
        )  # fmt: skip
        assert not result.is_error, result.content
        task_id = result.structured_content["id"]  # type: ignore[index]
    sign_in(browser, daemon.port, seeded["bob"])
    browser.find_element(By.LINK_TEXT, "Tasks").click()
    assert "pending" in task_row(browser, "Prepare the Q3 roadmap review")
    browser.execute_script("window.notReloaded = true")
    async with mcp_client(daemon.url, seeded["bob"]) as client:  # bob's own agent accepts, then finishes it
        assert not (await client.call_tool("task_accept", {"task_id": task_id})).is_error
        wait_until(browser, lambda: "accepted" in task_row(browser, "Prepare the Q3 roadmap review"))
        done = await client.call_tool("task_update", {"task_id": task_id, "status": "done"})
        assert not done.is_error
        wait_until(browser, lambda: "done" in task_row(browser, "Prepare the Q3 roadmap review"))
    assert browser.execute_script("return window.notReloaded") is True
    browser.find_element(By.LINK_TEXT, "pending").click()
    assert "Prepare the Q3 roadmap review" not in browser.find_element(By.ID, "tasks").text
    browser.find_element(By.LINK_TEXT, "done").click()
    browser.find_element(By.LINK_TEXT, "Prepare the Q3 roadmap review").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pack table"))
    pack = browser.find_element(By.ID, "pack").text
    assert "As bob sees it" in pack and "roadmap" in pack
    shoot(browser, shots, "task")

    browser.get(f"http://127.0.0.1:{daemon.port}/ui/health")
    WebDriverWait(browser, 60).until(lambda d: "ready" in d.find_element(By.TAG_NAME, "main").text)
    assert "interactive" in browser.find_element(By.ID, "queues").text
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "MiB" in main and "Last backup" in main and "all-MiniLM-L6-v2" in main
    assert browser.find_elements(By.CSS_SELECTOR, "#depth svg.chart")
    before = searches_charted(browser)  # the searches so far are drawn; more appear without a reload
    assert before > 0 and browser.find_elements(By.CSS_SELECTOR, "#latency svg.chart .s0")
    browser.execute_script("window.notReloaded = true")
    with UiClient(daemon.port) as bob:
        bob.sign_in(seeded["bob"])
        for query in ("roadmap review", "database backups", "green tea"):
            assert bob.get("/ui/search", q=query).status_code == 200
    wait_until(browser, lambda: searches_charted(browser) >= before + 3)
    assert browser.execute_script("return window.notReloaded") is True
    shoot(browser, shots, "health")
    sign_in(browser, daemon.port, seeded["alice"])
    browser.get(f"http://127.0.0.1:{daemon.port}/ui/tasks/{task_id}")
    assert "only bob sees it" in browser.find_element(By.ID, "pack").text


def test_the_owner_opens_the_admin_view_with_the_memos_ui_link(
    browser: WebDriver, daemon: RunningDaemon, seeded: dict[str, str], shots: Path
) -> None:
    """Steps: `memos ui` prints a link; the browser opens it and presses the button; the admin view lists
    every cube with its members, every agent, the audit log and the policy in force; a broken policy file
    shows there as a rejected change."""
    link = daemon.memos("ui").stdout.strip()
    browser.delete_all_cookies()
    browser.get(link)
    browser.find_element(By.ID, "admin-sign-in").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/ui/admin"))
    cubes = browser.find_element(By.ID, "all-cubes").text
    assert all(name in cubes for name in ("@alice", "@bob", "@carol", "team"))
    assert {"alice", "bob", "carol"} <= set(browser.find_element(By.ID, "agents").text.split())
    assert "cube_share" in browser.find_element(By.ID, "audit").text
    assert "No rejected change" in browser.find_element(By.ID, "policy").text
    shoot(browser, shots, "admin")
    broken = daemon.home / "policies" / "broken.toml"
    broken.write_text("[[rule]\n", encoding="utf-8")
    try:

        def rejected() -> bool:
            browser.refresh()
            return "Rejected change" in browser.find_element(By.ID, "policy").text

        wait_until(browser, rejected)
        assert "broken.toml" in browser.find_element(By.ID, "policy-error").text
    finally:
        broken.unlink()


def test_browser_screenshots_are_in_docs() -> None:
    """The README shows one; all main pages are kept beside it (refresh with MEMOS_UI_SCREENSHOTS=docs)."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    for name in ("cubes", "cube", "memory", "search", "task", "health", "admin"):
        assert (docs / f"ui-{name}.png").is_file(), name
