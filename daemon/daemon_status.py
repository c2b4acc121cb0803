"""What the running daemon tells `memos status`: written to the database's `meta` table, because the
command reads the database and `/healthz` carries no data."""

from __future__ import annotations

import collections
import logging
import os
from functools import partial

import anyio
import msgspec
from anyio.abc import TaskStatus

from daemon.embedder import Embedder
from daemon.errors import MemosError
from daemon.policy import PolicyState
from daemon.scheduler import Scheduler
from daemon.store import Store
from daemon.supervision import retrying
from daemon.timeutil import now_iso
from daemon.vectors import VectorIndex

log = logging.getLogger(__name__)

_REPORT_EVERY_S = 5.0


class DaemonStatus(msgspec.Struct, kw_only=True):
    pid: int
    version: str
    url: str
    started_at: str
    state: str  # "starting", "serving", "stopping", "stopped"
    embedder: str  # the model's state: "loading", "ready", "failed" or "disabled"
    updated_at: str
    embedder_model: str = ""  # the model it loads (as named in [embedder] model)
    embedder_problem: str | None = None  # why it failed (or stopped)
    # Memories left to embed again after a change of model (search is lexical until then); None: none.
    reembedding: int | None = None
    last_errors: list[str] = msgspec.field(default_factory=list)
    # Scheduler metrics per class: queued, running, done, failed, cancelled, coalesced, mean wait/run ms.
    queue: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)


class StoredStatus(msgspec.Struct, kw_only=True):
    """The database's own account: schema version, counts, and the last reports of the policy watcher and
    of the daemon that served it (None where nothing was ever reported)."""

    schema_version: int | None
    agents: int
    cubes: int
    memories: int
    policy: PolicyState | None
    daemon: DaemonStatus | None


async def stored_status(store: Store) -> StoredStatus:
    async with store.read() as conn:
        counts = await conn.row(
            "SELECT (SELECT max(version) FROM schema_migrations) AS schema_version,"
            " (SELECT count(*) FROM agents) AS agents, (SELECT count(*) FROM cubes) AS cubes,"
            " (SELECT count(*) FROM memories WHERE deleted_at IS NULL) AS memories"
        )
        policy = await conn.value("SELECT value FROM meta WHERE key = 'policy_status'")
        daemon = await conn.value("SELECT value FROM meta WHERE key = 'daemon_status'")
    assert counts is not None
    return StoredStatus(
        schema_version=counts["schema_version"],
        agents=counts["agents"],
        cubes=counts["cubes"],
        memories=counts["memories"],
        policy=msgspec.json.decode(policy, type=PolicyState) if policy else None,
        daemon=msgspec.json.decode(daemon, type=DaemonStatus) if daemon else None,
    )


class _ErrorMemory(logging.Handler):
    """Keeps the last few ERROR records (message only, never memory content: we do not log content)."""

    def __init__(self, size: int = 10) -> None:
        super().__init__(level=logging.ERROR)
        self.records: collections.deque[str] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{now_iso()} {record.name}: {record.getMessage()}"[:500])


class StatusReporter:
    def __init__(
        self,
        store: Store,
        version: str,
        url: str,
        embedder: Embedder,
        vectors: VectorIndex,
        scheduler: Scheduler | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._store = store
        self._embedder = embedder
        self._vectors = vectors
        self.status = DaemonStatus(
            pid=os.getpid(), version=version, url=url, started_at=now_iso(), state="starting",
            embedder="", updated_at=now_iso(),
        )  # fmt: skip
        self._errors = _ErrorMemory()
        logging.getLogger().addHandler(self._errors)

    async def publish(self, state: str | None = None) -> None:
        """Write the status if anything in it changed (or a state is given)."""
        new = msgspec.structs.replace(
            self.status,
            state=state or self.status.state,
            embedder=self._embedder.state,
            embedder_model=self._embedder.model_name,
            embedder_problem=self._embedder.problem,
            reembedding=self._vectors.reembedding,
            last_errors=list(self._errors.records),
            queue=self._scheduler.snapshot() if self._scheduler is not None else {},
        )
        if new == self.status and state is None:
            return
        new = msgspec.structs.replace(new, updated_at=now_iso())
        async with self._store.write() as conn:
            await conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('daemon_status', ?)",
                (msgspec.json.encode(new).decode(),),
            )
        self.status = new  # only once written: a failed write is tried again by the next publish

    async def announce(self, state: str) -> None:
        """Record "stopping" or "stopped": a locked database or a full disk must not keep the shutdown from
        draining requests and exiting cleanly, so a retryable failure is only logged."""
        try:
            await self.publish(state)
        except MemosError as exc:
            if not exc.retryable:
                raise
            log.warning("memosd is %s, but its status could not be recorded: %s", state, exc)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await retrying("writing the daemon status", partial(self.publish, "serving"))
        task_status.started()
        while True:
            await anyio.sleep(_REPORT_EVERY_S)
            await retrying("writing the daemon status", self.publish)

    def close(self) -> None:
        logging.getLogger().removeHandler(self._errors)
