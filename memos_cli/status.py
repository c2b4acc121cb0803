"""What `memos status` reports, read from the database and the daemon's health endpoint.

A daemon serves this database only if it holds the database's instance lock; its health endpoint alone
proves nothing (another memosd, on another database, may listen on the configured port). The command never
creates the database: a path no daemon has served yet is reported as such.
"""

from __future__ import annotations

import httpx2
import msgspec

from daemon import Config, DaemonStatus, InstanceLock, PolicyState, Services


class Status(msgspec.Struct, kw_only=True):
    daemon: str
    running: bool  # a memosd holds this database and answers its health endpoint
    daemon_status: DaemonStatus | None  # the last report of the daemon that served it (maybe gone since)
    database_exists: bool
    schema_version: int | None
    agents: int
    cubes: int
    memories: int
    policy: PolicyState | None


def serving_daemon(config: Config) -> bool:
    """True if a memosd holds this database's lock (call it before opening the database)."""
    return config.database_path.exists() and InstanceLock(config.database_path).held_by_other()


async def healthy(base_url: str) -> int | None:
    """The status code of `GET base_url/healthz`, or None if nothing answers there."""
    try:
        async with httpx2.AsyncClient(timeout=2.0) as http:
            return (await http.get(f"{base_url}/healthz")).status_code
    except httpx2.HTTPError:
        return None


def base_url(mcp_url: str) -> str:
    return mcp_url.removesuffix("/mcp")


async def daemon_state(config: Config, held: bool, reported: DaemonStatus | None) -> tuple[str, bool]:
    """A sentence about the daemon of this database, and whether it runs and answers."""
    configured = f"http://{config.server.host}:{config.server.port}"
    if not held:
        other = await healthy(configured)
        beside = (
            f"; something else answers at {configured} (another memosd on another database?)"
            if other is not None
            else ""
        )
        return f"not running (start it with memosd){beside}", False
    url = base_url(reported.url) if reported is not None else configured
    code = await healthy(url)
    pid = f" (pid {reported.pid})" if reported is not None else ""
    if code == 200:
        return f"running at {url}/mcp{pid}", True
    if code is None:
        return f"running{pid} but not answering at {url}/healthz (starting, or stuck?)", False
    return f"running{pid} but unhealthy at {url} (HTTP {code})", False


def absent(daemon: str) -> Status:
    return Status(
        daemon=daemon, running=False, daemon_status=None, database_exists=False, schema_version=None,
        agents=0, cubes=0, memories=0, policy=None,
    )  # fmt: skip


async def read_status(services: Services, held: bool) -> Status:
    stored = await services.stored_status()
    daemon, running = await daemon_state(services.config, held, stored.daemon)
    return Status(
        daemon=daemon,
        running=running,
        daemon_status=stored.daemon,
        database_exists=True,
        schema_version=stored.schema_version,
        agents=stored.agents,
        cubes=stored.cubes,
        memories=stored.memories,
        policy=stored.policy,
    )
