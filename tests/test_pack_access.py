"""Access taken away is gone from context packs too: a pack is a cached permission decision, checked again on
every read, through the real daemon and the MCP SDK's client (the tool and both context resources)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client

from tests.conftest import RunningDaemon, mcp_client
from tests.test_mcp_http import call
from tests.test_policy_live import within

pytestmark = pytest.mark.anyio

SECRET = "The ledger reconciliation runs nightly at 02:00 against the Zephyr vault"


async def views(client: Client, agent: str, task_ids: list[str]) -> list[dict[str, Any]]:
    """Every way the agent can read its packs: context_get and memos://tasks/{id}/context for each task, and
    memos://agents/{agent}/context."""
    packs = []
    for task_id in task_ids:
        packs.append(await call(client, "context_get", task_id=task_id))
        resource = await client.read_resource(f"memos://tasks/{task_id}/context")
        packs.append(json.loads(resource.contents[0].text))
    current = await client.read_resource(f"memos://agents/{agent}/context")
    packs.append(json.loads(current.contents[0].text))
    return packs


def holds(pack: dict[str, Any], memory_id: str) -> bool:
    return memory_id in {item["id"] for item in pack["items"]} or "at 02:00" in pack["markdown"]


@pytest.mark.parametrize("revocation", ["unshare", "policy", "group"])
async def test_a_revoked_reader_never_reads_the_memory_through_a_pack_of_an_open_or_done_task(
    daemon: RunningDaemon, revocation: str
) -> None:
    """Steps: A gives B read on a cube (a cube_share grant, a policy-file rule, or a grant to a group B is
    in) holding a memory; A hands B two tasks on it; B finishes one; every pack B reads holds the memory.
    The access is taken away (cube_unshare, the rule removed from the file, B taken out of the group); from
    then on no pack B reads — context_get, memos://tasks/{id}/context, memos://agents/{B}/context, of the
    open task and the done one — holds the memory or its text, while B's own notes stay."""
    a_name, b_name, cube = f"pa-{revocation}", f"pb-{revocation}", f"ledger-{revocation}"
    a, b = daemon.add_agent(a_name), daemon.add_agent(b_name)
    if revocation == "unshare":
        daemon.relate(f"team-{revocation}", a_name, b_name)  # so A can name B
    policy = daemon.config_path.parent / "policies" / f"{revocation}.toml"
    async with mcp_client(daemon.url, a) as a_client, mcp_client(daemon.url, b) as b_client:
        await call(a_client, "cube_create", name=cube)
        memory = await call(a_client, "memory_add", cube=cube, content=SECRET)
        if revocation == "unshare":
            await call(a_client, "cube_share", cube=cube, grantee=b_name, permission="read")
        elif revocation == "policy":
            policy.write_text(
                f'[[rule]]\ncubes = ["{cube}"]\nagents = ["{b_name}"]\npermission = "read"\n',
                encoding="utf-8",
            )
        else:
            daemon.memos("group", "add", f"g-{revocation}")
            daemon.memos("group", "add-member", f"g-{revocation}", b_name)
            await call(a_client, "cube_share", cube=cube, grantee=f"group:g-{revocation}", permission="read")

        async def b_reads() -> bool:
            return not (await b_client.call_tool("memory_get", {"id": memory["id"]})).is_error

        await within(5.0, b_reads)
        done = await call(
            a_client, "task_handoff", to_agent=b_name, title="Check the ledger reconciliation in the Zephyr vault",
            cubes=[cube], notes="nightly job",
        )  # fmt: skip
        await call(b_client, "task_accept", task_id=done["id"])
        assert holds(await call(b_client, "context_get", task_id=done["id"]), memory["id"])
        await call(b_client, "task_update", task_id=done["id"], status="done", notes="checked")
        open_task = await call(
            a_client, "task_handoff", to_agent=b_name, title="Reconcile the Zephyr vault ledger again",
            cubes=[cube], notes="nightly job",
        )  # fmt: skip
        task_ids = [open_task["id"], done["id"]]
        assert all(holds(pack, memory["id"]) for pack in await views(b_client, b_name, task_ids))

        if revocation == "unshare":
            await call(a_client, "cube_unshare", cube=cube, grantee=b_name)
        elif revocation == "policy":
            policy.write_text("# nothing granted\n", encoding="utf-8")
        else:
            daemon.memos("group", "remove-member", f"g-{revocation}", b_name)

        async def b_refused() -> bool:
            return not await b_reads()

        await within(5.0, b_refused)
        packs = await views(b_client, b_name, task_ids)
        assert [holds(pack, memory["id"]) for pack in packs] == [False] * 5
        assert packs[-1]["task"]["id"] == open_task["id"]  # the current pack is the open task's
        assert all("nightly job" in pack["markdown"] for pack in packs)  # what B may still read stays
