"""The dashboard over plain HTTP against memosd as a real process: sign-in, sessions, CSRF, Origin and Host,
ids of other agents, edits through the service API (audited) and the live event stream."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from tests.conftest import RunningDaemon, free_port, mcp_client, start_daemon, stop_daemon, write_config
from tests.ui_client import UiClient, csrf_of, staff_agent


@pytest.fixture
def clients(lexical_daemon: RunningDaemon) -> Iterator[Callable[[], UiClient]]:
    """Makes dashboard clients and closes them after the test."""
    made: list[UiClient] = []

    def make() -> UiClient:
        made.append(UiClient(lexical_daemon.port))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def signed_in(
    lexical_daemon: RunningDaemon, request: pytest.FixtureRequest
) -> Iterator[tuple[UiClient, str]]:
    """A fresh agent (named after the test) signed in; yields the client and the agent's token."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[-40:].strip("-")
    token = staff_agent(lexical_daemon, name)
    client = UiClient(lexical_daemon.port)
    assert client.sign_in(token).status_code == 303
    try:
        yield client, token
    finally:
        client.close()


def _agent(client: UiClient) -> str:
    found = re.search(r'<span id="agent">([^<]+)</span>', client.get("/ui/cubes").text)
    assert found
    return found.group(1)


def test_sign_in_sets_an_httponly_strict_cookie_that_holds_a_session_id_not_the_token(
    lexical_daemon: RunningDaemon, clients: Callable[[], UiClient]
) -> None:
    token = staff_agent(lexical_daemon, "cookie-owner")
    client = clients()
    response = client.sign_in(token)
    assert response.status_code == 303 and response.headers["location"] == "/ui/cubes"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("memos_ui="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert token not in cookie and token.removeprefix("memos_") not in cookie
    assert client.get("/ui/cubes").status_code == 200
    assert "@cookie-owner" in client.get("/ui/cubes").text


def test_a_wrong_token_is_refused_and_pages_need_a_session(clients: Callable[[], UiClient]) -> None:
    client = clients()
    response = client.sign_in("memos_not-a-real-token")
    assert response.status_code == 401 and "not valid" in response.text
    for path in ("/ui/cubes", "/ui/search?q=x", "/ui/tasks", "/ui/audit", "/ui/health", "/ui/memories/mem_0"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/ui/sign-in", path


def test_sign_in_without_the_forms_own_token_is_refused(
    lexical_daemon: RunningDaemon, clients: Callable[[], UiClient]
) -> None:
    """Login CSRF: a cross-site page cannot sign the browser in as an agent of its choosing."""
    token = staff_agent(lexical_daemon, "login-csrf")
    client = clients()
    response = client.http.post("/ui/sign-in", data={"csrf": "guessed", "token": token})
    assert response.status_code == 403
    assert not any(c.startswith("memos_ui=") for c in response.headers.get_list("set-cookie"))


def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    signed_in: tuple[UiClient, str],
) -> None:
    client, _ = signed_in
    cube = f"@{_agent(client)}"
    memory = client.add(cube, "The deploy window is Thursday at 14:00")
    for csrf in (None, "", "forged-token"):
        data = {"content": "changed by a forged form"} | ({"csrf": csrf} if csrf is not None else {})
        for path in (
            f"/ui/memories/{memory}/edit", f"/ui/memories/{memory}/delete", f"/ui/memories/{memory}/restore",
            f"/ui/memories/{memory}/supersede", f"/ui/cubes/{cube}/memories", f"/ui/cubes/{cube}/share",
            f"/ui/cubes/{cube}/unshare", "/ui/sign-out",
        ):  # fmt: skip
            response = client.http.post(path, data={**data, "grantee": "*", "permission": "read"})
            assert response.status_code == 403, (path, csrf)
    page = client.get(f"/ui/memories/{memory}").text
    assert "Thursday at 14:00" in page and "forged" not in page and "pill ok" in page
    listing = client.get(f"/ui/cubes/{cube}")
    assert listing.status_code == 200 and "forged" not in listing.text  # still signed in
    assert "cube_share by" not in listing.text  # the forged share changed nothing


def test_a_foreign_origin_or_host_is_refused_as_the_mcp_endpoint_refuses_it(
    signed_in: tuple[UiClient, str], lexical_daemon: RunningDaemon
) -> None:
    client, _ = signed_in
    cube = f"@{_agent(client)}"
    csrf = csrf_of(client.get("/ui/cubes").text)
    evil = client.http.post(
        f"/ui/cubes/{cube}/memories",
        data={"csrf": csrf, "content": "from evil.example"},
        headers={"Origin": "http://evil.example"},
    )
    assert evil.status_code == 403
    assert client.http.get("/ui/cubes", headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.http.get("/ui/cubes", headers={"Host": "evil.example"}).status_code == 421
    assert client.http.get("/ui/sign-in", headers={"Host": "evil.example:80"}).status_code == 421
    # The MCP endpoint answers the same Host and Origin the same way.
    mcp = httpx2.post(
        f"http://127.0.0.1:{lexical_daemon.port}/mcp", headers={"Host": "evil.example"}, json={}, timeout=10
    )
    assert mcp.status_code in (401, 421)
    assert "from evil.example" not in client.get(f"/ui/cubes/{cube}").text


def test_another_agents_ids_in_urls_are_404_like_missing_ones(
    lexical_daemon: RunningDaemon, signed_in: tuple[UiClient, str], clients: Callable[[], UiClient]
) -> None:
    """Steps: alice writes a private memory; the signed-in agent asks for it by id and for alice's cube,
    reads and writes; every answer is the 404 a missing id gets, and alice's memory is unchanged."""
    alice = clients()
    alice.sign_in(staff_agent(lexical_daemon, "url-alice"))
    secret = alice.add("@url-alice", "url-alice's private PIN is 4821")
    client, _ = signed_in
    missing = client.get("/ui/memories/mem_00000000deadbeef")
    assert missing.status_code == 404
    theirs = client.get(f"/ui/memories/{secret}")
    assert theirs.status_code == 404 and "4821" not in theirs.text
    assert re.sub(r"mem_\w+", "ID", theirs.text) == re.sub(r"mem_\w+", "ID", missing.text)
    for path in (
        f"/ui/memories/{secret}/edit",
        f"/ui/memories/{secret}/delete",
        f"/ui/memories/{secret}/supersede",
    ):
        response = client.post(path, {"content": "overwritten"})
        assert response.status_code == 404 and "4821" not in response.text, path
    cube = client.get("/ui/cubes/@url-alice")
    assert cube.status_code == 404 and "4821" not in cube.text
    assert client.get("/ui/cubes/no-such-cube").status_code == 404
    assert client.post("/ui/cubes/@url-alice/memories", {"content": "x"}).status_code == 404
    assert (
        client.post("/ui/cubes/@url-alice/share", {"grantee": "*", "permission": "read"}).status_code == 404
    )
    found = client.get("/ui/search", q="private PIN")
    assert found.status_code == 200 and "private PIN is" not in found.text and "0 results" in found.text
    page = alice.get(f"/ui/memories/{secret}").text
    assert "private PIN is 4821" in page and "overwritten" not in page


def test_a_rotated_token_or_a_disabled_agent_ends_the_dashboard_session(
    lexical_daemon: RunningDaemon, clients: Callable[[], UiClient]
) -> None:
    for change in (["rotate-token"], ["disable"]):
        name = f"ended-{change[0]}"
        client = clients()
        client.sign_in(staff_agent(lexical_daemon, name))
        memory = client.add(f"@{name}", "The spare key is in the blue box")
        csrf = csrf_of(client.get(f"/ui/memories/{memory}").text)
        changed = lexical_daemon.memos("agent", *change, name).stdout
        response = client.get("/ui/cubes")
        assert response.status_code == 303 and response.headers["location"] == "/ui/sign-in"
        # The old cookie with its form's CSRF token changes nothing either.
        for path in (f"/ui/memories/{memory}/edit", f"/ui/memories/{memory}/delete"):
            posted = client.http.post(path, data={"csrf": csrf, "content": "The key is gone"})
            assert posted.status_code == 303 and posted.headers["location"] == "/ui/sign-in", path
        if change == ["rotate-token"]:  # the new token sees the memory as it was
            fresh = clients()
            assert fresh.sign_in(changed.strip().splitlines()[-1]).status_code == 303
            assert "pill ok" in (page := fresh.get(f"/ui/memories/{memory}").text) and "blue box" in page
        events = client.http.get("/ui/events", headers={"Accept": "text/event-stream"})
        assert events.status_code == 401
        # The old session id stays dead even after the agent is usable again.
        if change == ["disable"]:
            lexical_daemon.memos("agent", "disable", "--enable", name)
            assert client.get("/ui/cubes").status_code == 303


def test_edits_go_through_the_service_api_and_are_audited(signed_in: tuple[UiClient, str]) -> None:
    """Steps: add, correct, supersede, delete, restore a memory; share and unshare the cube; each change
    shows on its page and in the audit log under the tools' action names."""
    client, _ = signed_in
    name = _agent(client)
    cube = f"@{name}"
    memory = client.add(cube, "Bob lives in Paris", kind="fact", tags="people, bob")
    page = client.get(f"/ui/memories/{memory}").text
    assert "Bob lives in Paris" in page and "people" in page
    response = client.post(
        f"/ui/memories/{memory}/edit",
        {"content": "Bob lives in Paris, France", "kind": "fact", "tags": "people", "version": "1"},
        csrf_from=f"/ui/memories/{memory}",
    )
    assert response.status_code == 303
    page = client.get(f"/ui/memories/{memory}").text
    assert "v2" in page and re.search(
        r"<del>Paris</del><ins>Paris, France</ins>|<ins>[^<]*France</ins>", page
    )
    stale = client.post(
        f"/ui/memories/{memory}/edit",
        {"content": "stale edit", "version": "1"},
        csrf_from=f"/ui/memories/{memory}",
    )
    assert stale.status_code == 409
    successor = client.post(f"/ui/memories/{memory}/supersede", {"content": "Bob moved to Berlin"})
    assert successor.status_code == 303
    new_id = successor.headers["location"].rsplit("/", 1)[1]
    new_page = client.get(f"/ui/memories/{new_id}").text
    assert f'Replaces <a href="/ui/memories/{memory}">' in new_page
    old_page = client.get(f"/ui/memories/{memory}").text
    assert "superseded" in old_page and f"/ui/memories/{new_id}" in old_page
    listing = client.get(f"/ui/cubes/{cube}").text
    assert "Bob moved to Berlin" in listing and "Bob lives in Paris" not in listing
    assert "Bob lives in Paris" in client.get(f"/ui/cubes/{cube}", show="superseded").text
    assert client.post(f"/ui/memories/{new_id}/delete", {}).status_code == 303
    assert "Bob moved to Berlin" not in client.get(f"/ui/cubes/{cube}").text
    assert "Bob moved to Berlin" in client.get(f"/ui/cubes/{cube}", show="deleted").text
    assert client.post(f"/ui/memories/{new_id}/restore", {}).status_code == 303
    assert "Bob moved to Berlin" in client.get(f"/ui/cubes/{cube}").text
    assert client.post(f"/ui/cubes/{cube}/share", {"grantee": "*", "permission": "read"}).status_code == 303
    members = client.get(f"/ui/cubes/{cube}").text
    assert f"cube_share by {name}" in members
    bad = client.post(f"/ui/cubes/{cube}/share", {"grantee": "nobody-here", "permission": "read"})
    # The tools' answer: an agent the caller cannot name reads exactly like one that does not exist.
    assert bad.status_code == 404 and "no agent &#39;nobody-here&#39; you can share with" in bad.text
    assert client.post(f"/ui/cubes/{cube}/unshare", {"grantee": "*"}).status_code == 303
    assert f"cube_share by {name}" not in client.get(f"/ui/cubes/{cube}").text
    audit = client.get("/ui/audit").text
    for action in (
        "memory_add",
        "memory_update",
        "memory_delete",
        "memory_restore",
        "cube_share",
        "cube_unshare",
    ):
        assert f"<td>{action}</td>" in audit, action


def test_pages_render_and_report_their_server_time(
    signed_in: tuple[UiClient, str], lexical_daemon: RunningDaemon
) -> None:
    client, _ = signed_in
    cube = f"@{_agent(client)}"
    memory = client.add(cube, "The standup moved to 9:45 last week", kind="event")
    for path in (
        "/ui/cubes", f"/ui/cubes/{cube}", f"/ui/memories/{memory}", "/ui/search?q=standup",
        "/ui/tasks", "/ui/audit", "/ui/health",
    ):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        assert re.fullmatch(
            r"app;dur=\d+(\.\d+)?(, search;dur=\d+(\.\d+)?)?", response.headers["server-timing"]
        ), path
        assert ("search;dur=" in response.headers["server-timing"]) == path.startswith("/ui/search"), path
        assert "Content-Security-Policy" in response.headers
    found = client.get("/ui/search", q="standup").text
    assert '<svg class="bars"' in found and "lexical" in found and "<mark>standup</mark>" in found
    assert '<svg class="chart"' in client.get(f"/ui/cubes/{cube}").text
    health = client.get("/ui/health").text  # an agent's view: no paths, no policy (the owner's admin view)
    assert "MiB" in health and str(lexical_daemon.home) not in health and "policies" not in health
    # The searches above are in this minute's latency, and the queues are sampled: both charts are drawn.
    latency = health.split('id="latency"', 1)[1].split("</section>", 1)[0]
    assert "<title>search latency per minute</title>" in latency
    assert re.search(r'p50 <span class="muted">[\d.]+ ms</span>', latency)
    depth = health.split('id="depth"', 1)[1].split("</section>", 1)[0]
    assert "<title>queue depth per minute</title>" in depth and re.search(
        r'searches waiting <span class="muted">\d+ jobs', depth
    )


def test_the_event_stream_tells_a_page_only_of_changes_it_may_read(
    lexical_daemon: RunningDaemon, clients: Callable[[], UiClient]
) -> None:
    """Steps: alice shares her cube with bob; bob opens the stream; carol writes in her private cube, then
    alice in the shared one; the first memory event bob hears is alice's."""
    alice, bob, carol = (clients() for _ in range(3))
    for client, name in ((alice, "live-alice"), (bob, "live-bob"), (carol, "live-carol")):
        client.sign_in(staff_agent(lexical_daemon, name))
    alice.post("/ui/cubes/@live-alice/share", {"grantee": "live-bob", "permission": "read"})
    with bob.http.stream("GET", "/ui/events", headers={"Accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        carol.add("@live-carol", "live-carol's private note")
        shared = alice.add("@live-alice", "live-alice's shared note")
        events = []
        for line in lines:
            if line.startswith("data:") and events and events[-1] == "event: memory":
                events.append(line)
                break
            if line.startswith("event:"):
                events.append(line)
        assert json.loads(events[-1].removeprefix("data:")) == {"cube": "@live-alice", "id": shared}


def test_the_dashboard_can_be_turned_off(tmp_path: Path) -> None:
    port = free_port()
    running = start_daemon(
        write_config(tmp_path, port=port, model="none", extra="[ui]\nenabled = false"), tmp_path, port
    )
    try:
        assert httpx2.get(f"http://127.0.0.1:{port}/ui/sign-in", timeout=10).status_code == 404
    finally:
        stop_daemon(running)


def test_memos_ui_prints_a_one_time_link_to_the_admin_view(
    lexical_daemon: RunningDaemon, signed_in: tuple[UiClient, str], clients: Callable[[], UiClient]
) -> None:
    """Steps: `memos ui` prints a link; opening it shows a button (fetching it uses nothing up); pressing it
    opens the admin view with every cube, agent and grant; the link does not work twice; agents' pages are
    not the admin's and the admin view is not an agent's; a rejected policy change shows there."""
    agent, _ = signed_in
    private = agent.add(f"@{_agent(agent)}", "an agent's private note")
    link = lexical_daemon.memos("ui").stdout.strip()
    assert link.startswith(f"http://127.0.0.1:{lexical_daemon.port}/ui/admin/sign-in?secret=")
    owner = clients()
    path = link.removeprefix(owner.base)
    for _ in range(2):  # a link preview or prefetch fetches it; only the button spends it
        form = owner.http.get(path)
        assert form.status_code == 200 and "Sign in as the owner" in form.text
    secret = path.split("secret=", 1)[1]
    response = owner.http.post("/ui/admin/sign-in", data={"csrf": csrf_of(form.text), "secret": secret})
    assert response.status_code == 303 and response.headers["location"] == "/ui/admin"
    page = owner.get("/ui/admin").text
    name = _agent(agent)
    assert f"<td>@{name}</td>" in page and f"<td>{name}</td>" in page and "owner" in page
    assert "an agent's private note" not in page  # the owner's view lists, it does not read memories
    assert owner.get("/ui/cubes").headers["location"] == "/ui/admin"
    assert owner.get(f"/ui/memories/{private}").headers["location"] == "/ui/admin"
    assert agent.get("/ui/admin").status_code == 404
    again = clients()
    form = again.http.get(path)
    reused = again.http.post("/ui/admin/sign-in", data={"csrf": csrf_of(form.text), "secret": secret})
    assert reused.status_code == 401 and "works once" in reused.text
    bad = lexical_daemon.home / "policies" / "broken.toml"
    bad.write_text("[[rule]\n", encoding="utf-8")
    try:
        deadline = time.monotonic() + 20
        while "Rejected change" not in (page := owner.get("/ui/admin").text):
            assert time.monotonic() < deadline, "the rejected policy change never showed"
            time.sleep(0.2)
        assert "broken.toml" in page
    finally:
        bad.unlink()
    signed_out = owner.post("/ui/sign-out", {}, csrf_from="/ui/admin")
    assert signed_out.status_code == 303 and owner.get("/ui/admin").headers["location"] == "/ui/sign-in"


def test_bad_filters_and_queries_get_a_page_that_names_what_was_wrong(
    signed_in: tuple[UiClient, str],
) -> None:
    client, _ = signed_in
    cube = f"@{_agent(client)}"
    for path, params, words in (
        (f"/ui/cubes/{cube}", {"since": "last tuesday"}, "since"),
        (f"/ui/cubes/{cube}", {"kind": "poem"}, "kind"),
        (f"/ui/cubes/{cube}", {"cursor": "zzz"}, "cursor"),
        ("/ui/search", {"q": "tea", "mode": "telepathy"}, "mode"),
        ("/ui/tasks", {"status": "someday"}, "status"),
    ):
        response = client.get(path, **params)
        assert response.status_code == 400, (path, params, response.text[:300])
        assert words in response.text.split('role="alert">', 1)[1].split("</p>", 1)[0], (path, params)


def test_an_open_event_stream_ends_when_the_token_is_rotated(
    lexical_daemon: RunningDaemon, clients: Callable[[], UiClient]
) -> None:
    """Steps: bob reads alice's shared cube and listens; bob's token is rotated; alice writes there; bob's
    stream says signed-out instead of telling him of the write, and ends."""
    alice, bob = clients(), clients()
    alice.sign_in(staff_agent(lexical_daemon, "rotated-alice"))
    bob.sign_in(staff_agent(lexical_daemon, "rotated-bob"))
    alice.post("/ui/cubes/@rotated-alice/share", {"grantee": "rotated-bob", "permission": "read"})
    with bob.http.stream("GET", "/ui/events", headers={"Accept": "text/event-stream"}) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        lexical_daemon.memos("agent", "rotate-token", "rotated-bob")
        alice.add("@rotated-alice", "written after bob's token was rotated")
        rest = list(lines)  # the server ends the stream
    events = [line for line in rest if line.startswith("event:") and line != "event: tick"]
    assert events == ["event: signed-out"]


def test_a_reader_gets_the_tools_refusals_for_writes_and_they_are_audited(
    lexical_daemon: RunningDaemon, clients: Callable[[], UiClient]
) -> None:
    """Steps: alice lets bob read her cube; bob may read her memory but not correct, delete or supersede
    it, add to the cube or share it: each is the tools' PermissionDenied (403), nothing changes, and alice's
    audit page shows the refusals."""
    alice, bob = clients(), clients()
    alice.sign_in(staff_agent(lexical_daemon, "reader-alice"))
    bob.sign_in(staff_agent(lexical_daemon, "reader-bob"))
    alice.post("/ui/cubes/@reader-alice/share", {"grantee": "reader-bob", "permission": "read"})
    memory = alice.add("@reader-alice", "The printer code is 1234")
    assert "printer code is 1234" in bob.get(f"/ui/memories/{memory}").text
    for path, data in (
        (f"/ui/memories/{memory}/edit", {"content": "The printer code is 9999"}),
        (f"/ui/memories/{memory}/delete", {}),
        (f"/ui/memories/{memory}/supersede", {"content": "The printer code is 9999"}),
        ("/ui/cubes/@reader-alice/memories", {"content": "The printer code is 9999"}),
        ("/ui/cubes/@reader-alice/share", {"grantee": "*", "permission": "read"}),
    ):
        response = bob.post(path, data)
        assert response.status_code == 403 and "may read" in response.text, (path, response.text[:300])
    page = alice.get(f"/ui/memories/{memory}").text
    assert "printer code is 1234" in page and "9999" not in page and "pill ok" in page
    deadline = time.monotonic() + 10  # refusals reach the audit log in batches
    while (audit := alice.get("/ui/audit").text).count("<td>denied</td>") < 5:
        assert time.monotonic() < deadline, audit
        time.sleep(0.2)
    assert "<td>reader-bob</td>" in audit


def test_archived_memories_are_told_apart_from_deleted_ones_and_can_be_restored(
    lexical_daemon: RunningDaemon, signed_in: tuple[UiClient, str]
) -> None:
    """Steps: the agent keeps only its newest memory (max_count 1) and writes three; it deletes one;
    `memos cube retention` archives the oldest; the cube page's deleted-and-archived view tells the two
    apart, the archived memory's page says why, and restoring it brings it back as current."""
    client, _ = signed_in
    name = _agent(client)
    cube = f"@{name}"
    lexical_daemon.memos("cube", "configure", cube, "--agent", name, "--max-count", "1")
    oldest = client.add(cube, "The first office was in Leeds")
    deleted = client.add(cube, "The second office was in York")
    client.add(cube, "The office is in Manchester now")
    assert client.post(f"/ui/memories/{deleted}/delete", {}).status_code == 303
    lexical_daemon.memos("cube", "retention", cube)
    listing = client.get(f"/ui/cubes/{cube}", show="deleted").text
    rows = {m: listing.split(f"/ui/memories/{m}", 1)[1].split("</tr>", 1)[0] for m in (oldest, deleted)}
    assert ">archived</span>" in rows[oldest] and "beyond the newest max_count 1" in rows[oldest]
    assert "deleted" in rows[deleted] and "archived" not in rows[deleted]
    page = client.get(f"/ui/memories/{oldest}").text
    assert 'id="archived"' in page and "beyond the newest max_count 1" in page
    assert 'id="archived"' not in client.get(f"/ui/memories/{deleted}").text
    assert client.post(f"/ui/memories/{oldest}/restore", {}).status_code == 303
    assert "pill ok" in client.get(f"/ui/memories/{oldest}").text
    assert "The first office was in Leeds" in client.get(f"/ui/cubes/{cube}").text


def test_a_memorys_neighbourhood_shows_memories_that_mention_the_same_names_it_may_read(
    lexical_daemon: RunningDaemon, signed_in: tuple[UiClient, str], clients: Callable[[], UiClient]
) -> None:
    """Steps: the agent writes three memories naming Priya Raman or the Osprey budget; another agent writes
    one naming both in its private cube; the first memory's page lists the agent's own two under each
    shared name, and nothing of the other agent's."""
    client, _ = signed_in
    cube = f"@{_agent(client)}"
    other = clients()
    other.sign_in(staff_agent(lexical_daemon, "entity-neighbour"))
    other.add("@entity-neighbour", "Secretly Priya Raman doubled the Osprey budget to 9100")
    centre = client.add(cube, "Yesterday Priya Raman approved the Osprey budget of 4500")
    client.add(cube, "On Monday Priya Raman asked for the design review notes")
    client.add(cube, "Finance moved the Osprey budget review to Thursday")
    shared = client.get(f"/ui/memories/{centre}").text.split('id="shared"', 1)[1].split("</section>", 1)[0]
    people = shared.split('<span class="tag">priya raman</span>', 1)[1].split("</li></ul>", 1)[0]
    assert "design review notes" in people and "in 2 memories" in people
    project = shared.split('<span class="tag">osprey</span>', 1)[1].split("</li></ul>", 1)[0]
    assert "moved the Osprey budget review" in project
    assert "Secretly" not in shared and "9100" not in shared


@pytest.mark.anyio
async def test_another_agents_task_in_a_url_is_404_like_a_missing_one(
    lexical_daemon: RunningDaemon, clients: Callable[[], UiClient]
) -> None:
    """Steps: task-alice hands task-bob a task over MCP; bob sees it on his tasks page; task-carol asks for its
    page by id and gets the page a made-up id gets, and her tasks page does not list it."""
    tokens = {name: staff_agent(lexical_daemon, name) for name in ("task-alice", "task-bob", "task-carol")}
    async with mcp_client(lexical_daemon.url, tokens["task-alice"]) as mcp:
        result = await mcp.call_tool(
            "task_handoff", {"to_agent": "task-bob", "title": "Renew the TLS certificate for billing"}
        )
        assert not result.is_error, result.content
        task_id = result.structured_content["id"]  # type: ignore[index]
    bob, carol = clients(), clients()
    bob.sign_in(tokens["task-bob"])
    carol.sign_in(tokens["task-carol"])
    assert "Renew the TLS certificate" in bob.get(f"/ui/tasks/{task_id}").text
    theirs, missing = carol.get(f"/ui/tasks/{task_id}"), carol.get("/ui/tasks/task_00000000deadbeef")
    assert theirs.status_code == missing.status_code == 404
    assert "TLS" not in theirs.text and "TLS" not in carol.get("/ui/tasks").text
    assert re.sub(r"task_\w+", "ID", theirs.text) == re.sub(r"task_\w+", "ID", missing.text)
