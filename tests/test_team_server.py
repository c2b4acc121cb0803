"""Several memosd on one PostgreSQL database: two real daemons on two loopback ports, one real server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.conftest import RunningDaemon, free_port, mcp_client, start_daemon, stop_daemon, write_config
from tests.pg_server import PgCluster
from tests.test_handoff import check_pack, prepare, subscribed
from tests.test_mcp_http import call

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def team(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, pg_cluster: PgCluster
) -> Iterator[tuple[RunningDaemon, RunningDaemon]]:
    """Two memosd with the real model, each with its own home and port, on one fresh database."""
    with pg_cluster.database() as url:
        daemons = []
        try:
            for name in ("a", "b"):
                home = tmp_path_factory.mktemp(f"memosd-{name}")
                port = free_port()
                daemons.append(
                    start_daemon(write_config(home, port=port, model=str(model_dir), url=url), home, port)
                )
            yield daemons[0], daemons[1]
        finally:
            for running in daemons:
                stop_daemon(running)


async def found_through(daemon: RunningDaemon, token: str, query: str, mode: str) -> list[str]:
    async with mcp_client(daemon.url, token) as client:
        result = await call(client, "memory_search", query=query, mode=mode)
    return [hit["content"] for hit in result["results"]]


async def test_a_write_through_one_daemon_is_found_through_the_other_by_words_and_by_meaning(
    team: tuple[RunningDaemon, RunningDaemon],
) -> None:
    """Steps: an agent made through daemon A's CLI authenticates at B too; a memory it adds through A is
    found through B at once by its words, and by its meaning (B's vector cache follows the table by NOTIFY)
    within a second on an idle machine (here: within 10 s)."""
    first, second = team
    token = first.add_agent("walker")
    async with mcp_client(first.url, token) as client:
        await call(client, "memory_add", content="I walk my dog along the river every morning")
    assert await found_through(second, token, "dog river", "lexical") == [
        "I walk my dog along the river every morning"
    ]
    deadline = time.monotonic() + 10
    while not (hits := await found_through(second, token, "a daily stroll with my puppy", "vector")):
        assert time.monotonic() < deadline, "B's vectors never learned of A's write"
        await anyio.sleep(0.1)
    assert hits[0] == "I walk my dog along the river every morning"


async def test_an_agent_on_one_daemon_is_told_of_a_handoff_made_through_the_other(
    team: tuple[RunningDaemon, RunningDaemon],
) -> None:
    """Steps: A and B as in test_handoff, set up through daemon A; B subscribes to its context resource
    through daemon B; A hands B a task through daemon A; B is notified through daemon B; the pack B reads
    there holds exactly what B may read."""
    first, second = team
    a, b, ids = await prepare(first, "team-a", "team-b", "team-cube")
    uri = "memos://agents/team-b/context"
    notified = anyio.Event()
    async with (
        subscribed(second.url, b, "auto", uri, notified) as b_client,
        mcp_client(first.url, a) as a_client,
    ):
        task = await call(
            a_client, "task_handoff", to_agent="team-b", title="Fix retries in the payments API",
            description="Duplicate charges after timeouts", cubes=["team-cube"], notes="look at the retry code first",
        )  # fmt: skip
        with anyio.fail_after(30):
            await notified.wait()
        check_pack(await call(b_client, "context_get", task_id=task["id"]), ids)
