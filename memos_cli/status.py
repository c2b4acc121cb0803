"""What `memos status` reports, read from the database and the daemon's health endpoint."""

from __future__ import annotations

import httpx2
import msgspec

from daemon import Services
from daemon.daemon_status import DaemonStatus
from daemon.policy import PolicyState


class Status(msgspec.Struct, kw_only=True):
    daemon: str
    daemon_status: DaemonStatus | None
    schema_version: int
    agents: int
    cubes: int
    memories: int
    policy: PolicyState | None


async def _daemon_state(services: Services) -> str:
    server = services.config.server
    url = f"http://{server.host}:{server.port}"
    try:
        async with httpx2.AsyncClient(timeout=2.0) as http:
            response = await http.get(f"{url}/healthz")
    except httpx2.HTTPError:
        return f"not reachable at {url}/mcp (start it with memosd)"
    return (
        f"running at {url}/mcp"
        if response.status_code == 200
        else f"unhealthy at {url} ({response.status_code})"
    )


async def read_status(services: Services) -> Status:
    async with services.store.read() as conn:
        counts = await conn.fetch_one(
            "SELECT (SELECT max(version) FROM schema_migrations), (SELECT count(*) FROM agents),"
            " (SELECT count(*) FROM cubes), (SELECT count(*) FROM memories WHERE deleted_at IS NULL)"
        )
        policy_row = await conn.fetch_one("SELECT value FROM meta WHERE key = 'policy_status'")
        daemon_row = await conn.fetch_one("SELECT value FROM meta WHERE key = 'daemon_status'")
    assert counts is not None
    return Status(
        daemon=await _daemon_state(services),
        daemon_status=msgspec.json.decode(daemon_row[0], type=DaemonStatus) if daemon_row else None,
        schema_version=counts[0],
        agents=counts[1],
        cubes=counts[2],
        memories=counts[3],
        policy=msgspec.json.decode(policy_row[0], type=PolicyState) if policy_row else None,
    )
