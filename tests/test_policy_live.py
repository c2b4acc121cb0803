"""Two agents sharing one running memosd over real MCP sessions, with policy files edited while it runs."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from tests.conftest import RunningDaemon, free_port, mcp_client, start_daemon, stop_daemon, write_config
from tests.test_mcp_http import call, call_error
from tests.test_stdio_bridge import bridge

pytestmark = pytest.mark.anyio

GRANT = """
[[rule]]
cubes = ["team-*"]
agents = ["pb"]
permission = "read"
"""


async def within(seconds: float, check: Callable[[], Awaitable[bool]]) -> float:
    """Poll `check` until it holds; returns how long that took (fails after `seconds`)."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s")
        await anyio.sleep(0.02)
    return time.monotonic() - start


async def test_a_policy_file_grants_and_revokes_access_within_a_second(daemon: RunningDaemon) -> None:
    """Steps: A writes to its private cube and to team-x; B cannot see team-x; a policy file grants B read
    on team-*; B reads team-x within a second but never A's private cube; the file is broken and B loses
    access within a second (a broken file grants nothing), and `memos status` and the log say so; fixed, it
    grants again; the rule is removed and B loses access within a second."""
    policy = daemon.config_path.parent / "policies" / "team.toml"
    tokens = {name: daemon.add_agent(name) for name in ("pa", "pb")}
    async with mcp_client(daemon.url, tokens["pa"]) as a, mcp_client(daemon.url, tokens["pb"], "legacy") as b:
        private = await call(a, "memory_add", content="A's private diary: the vault code is 1234")
        await call(a, "cube_create", name="team-x", description="shared")
        shared = await call(
            a, "memory_add", content="Team-x ships the vault feature on Friday", cube="team-x"
        )

        async def b_reads_team() -> bool:
            result = await b.call_tool("memory_get", {"id": shared["id"]})
            return not result.is_error

        assert not await b_reads_team()
        assert "Not found" in await call_error(b, "memory_search", query="vault", cubes=["team-x"])

        policy.write_text(GRANT, encoding="utf-8")
        granted_after = await within(1.0, b_reads_team)

        found = await call(b, "memory_search", query="vault code diary Friday", k=20)
        assert shared["id"] in [hit["id"] for hit in found["results"]]
        assert private["id"] not in [hit["id"] for hit in found["results"]]
        assert {c["name"] for c in (await call(b, "cube_list"))["cubes"]} == {"@pb", "team-x"}
        assert "Not found" in await call_error(b, "memory_get", id=private["id"])
        refused = await call_error(b, "memory_add", content="x", cube="team-x")
        assert "Permission denied" in refused  # B may read team-x now, so it is told why, not "not found"

        async def b_lost_team() -> bool:
            return not await b_reads_team()

        policy.write_text(GRANT + "\n[[rule]]\ncubes = ['team-*']\npermission = 'sudo'\n", encoding="utf-8")
        await within(1.0, b_lost_team)  # a broken file grants nothing, not even what it granted before
        status = daemon.memos("status").stdout
        assert "REJECTED team.toml: it grants nothing" in status and "team.toml: rule 2, line 7" in status
        assert "policy file team.toml rejected, so it grants nothing" in daemon.log()
        policy.write_text(GRANT, encoding="utf-8")
        await within(1.0, b_reads_team)
        assert "REJECTED" not in daemon.memos("status").stdout

        policy.write_text("# nothing granted\n", encoding="utf-8")
        revoked_after = await within(1.0, b_lost_team)
        assert "Not found" in await call_error(b, "memory_get", id=shared["id"])
    print(f"grant seen after {granted_after:.3f} s, revocation after {revoked_after:.3f} s")


async def test_a_disabled_or_wrong_token_is_refused_over_the_bridge(daemon: RunningDaemon) -> None:
    token = daemon.add_agent("bridged")
    async with bridge(daemon.config_path, daemon.home, "bridged", token) as client:
        assert (await call(client, "cube_list"))["home_cube"] == "@bridged"
        daemon.memos("agent", "disable", "bridged")
        message = await call_error(client, "cube_list")
        assert "refused agent bridged's token" in message
    async with bridge(daemon.config_path, daemon.home, "bridged", "memos_forged") as client:
        assert "refused agent bridged's token" in await call_error(client, "memory_add", content="x")


async def test_cube_share_from_mcp_takes_effect_at_once_and_cube_members_explains(
    daemon: RunningDaemon,
) -> None:
    tokens = {name: daemon.add_agent(name) for name in ("sa", "sb")}
    daemon.relate("s-team", "sa", "sb")  # so sa can name sb
    async with mcp_client(daemon.url, tokens["sa"]) as a, mcp_client(daemon.url, tokens["sb"]) as b:
        await call(a, "cube_create", name="proj-y")
        memory = await call(a, "memory_add", content="proj-y uses PostgreSQL 17", cube="proj-y")
        assert "Not found" in await call_error(b, "memory_get", id=memory["id"])
        members = await call(a, "cube_share", cube="proj-y", grantee="sb", permission="write")
        assert {(m["grantee"], m["permission"], m["source"]) for m in members["members"]} == {
            ("sa", "admin", "owner"),
            ("sb", "write", "cube_share by sa"),
        }
        await call(b, "memory_update", id=memory["id"], content="proj-y uses PostgreSQL 18")
        assert "Permission denied" in await call_error(
            b, "cube_share", cube="proj-y", grantee="sa", permission="read"
        )
        await call(a, "cube_unshare", cube="proj-y", grantee="sb")
        assert "Not found" in await call_error(b, "memory_get", id=memory["id"])
        audit = daemon.memos("audit", "--cube", "proj-y").stdout
        assert "cube_share" in audit and "cube_unshare" in audit and "memory_update" in audit


def test_status_reports_the_policy_in_force(daemon: RunningDaemon) -> None:
    out = daemon.memos("status").stdout
    assert "daemon      running at" in out
    assert "queue       interactive" in out and "queue       background" in out  # scheduler metrics
    assert f"in {Path(daemon.config_path.parent / 'policies')}" in out


BROKEN = "\n[[rule]]\ncubes = ['x']\npermission = 'sudo'\n"


async def test_a_broken_policy_file_grants_nothing_keeps_its_denies_and_spares_the_other_files(
    tmp_path: Path,
) -> None:
    """Steps: three files — grant.toml lets R read team-*, deny.toml refuses R team-secret, other.toml lets
    O read team-*; R reads team-open, not team-secret; O reads both. deny.toml breaks: R still cannot read
    team-secret (a broken file's last good denies stay). grant.toml breaks: R reads nothing, O still reads
    (valid files apply). memosd restarts with both files broken: the same holds, and `memos status` and the
    log say which files are rejected and what of them is in force."""
    home = tmp_path
    port = free_port()
    config = write_config(home, port=port, model="none")
    policies = home / "policies"
    policies.mkdir()
    grant = "[[rule]]\ncubes = ['team-*']\nagents = ['r']\npermission = 'read'\n"
    deny = "[[rule]]\ncubes = ['team-secret']\nagents = ['r']\npermission = 'read'\neffect = 'deny'\n"
    (policies / "grant.toml").write_text(grant, encoding="utf-8")
    (policies / "deny.toml").write_text(deny, encoding="utf-8")
    (policies / "other.toml").write_text(grant.replace("'r'", "'o'"), encoding="utf-8")
    daemon = start_daemon(config, home, port)
    try:
        tokens = {name: daemon.add_agent(name) for name in ("owner", "r", "o")}
        async with mcp_client(daemon.url, tokens["owner"]) as owner:
            ids = {}
            for cube in ("team-open", "team-secret"):
                await call(owner, "cube_create", name=cube)
                ids[cube] = (await call(owner, "memory_add", cube=cube, content=f"{cube} holds the plan"))[
                    "id"
                ]

        async def readable(agent: str) -> set[str]:
            async with mcp_client(daemon.url, tokens[agent]) as client:
                return {
                    cube
                    for cube, memory_id in ids.items()
                    if not (await client.call_tool("memory_get", {"id": memory_id})).is_error
                }

        async def becomes(agent: str, cubes: set[str]) -> None:
            async def check() -> bool:
                return await readable(agent) == cubes

            await within(5.0, check)

        await becomes("r", {"team-open"})
        await becomes("o", {"team-open", "team-secret"})
        (policies / "deny.toml").write_text(deny + BROKEN, encoding="utf-8")
        await within(5.0, lambda: _rejected(daemon, "deny.toml"))
        assert await readable("r") == {"team-open"}
        (policies / "grant.toml").write_text(grant + BROKEN, encoding="utf-8")
        await becomes("r", set())
        assert await readable("o") == {"team-open", "team-secret"}
        status = daemon.memos("status").stdout
        assert (
            "REJECTED deny.toml: it grants nothing (none of its allow rules are in force); 1 deny rules"
            in status
        )
        assert (
            "REJECTED grant.toml: it grants nothing (none of its allow rules are in force); 0 deny rules"
            in status
        )
        assert "rules from 3 files" in status

        assert stop_daemon(daemon) == 0
        (policies / "grant.toml").write_text(grant, encoding="utf-8")  # R may read team-*, but deny.toml ...
        daemon = start_daemon(config, home, port)
        assert await readable("r") == {"team-open"}  # ... is still broken: its last good deny stays
        (policies / "grant.toml").write_text(grant + BROKEN, encoding="utf-8")
        await becomes("r", set())
        assert stop_daemon(daemon) == 0
        daemon = start_daemon(config, home, port)
        assert await readable("r") == set()
        assert await readable("o") == {"team-open", "team-secret"}
        log = daemon.log()
        assert "policy file grant.toml rejected, so it grants nothing" in log
        assert "1 deny rules and 0 [[cube]] settings of its last good version stay" in log
        assert "last good policy stays in force" not in log
    finally:
        stop_daemon(daemon)


async def _rejected(daemon: RunningDaemon, file: str) -> bool:
    return f"REJECTED {file}" in daemon.memos("status").stdout
