"""The daemon's core lifespan: open the store, start the background services, yield the service API.

`open_services` is the one place that owns background work: the embedder, the vector and entity backfills run in the
task group it opens, and leaving the block cancels them and then closes the store (after in-flight writes,
which hold the store's write lock, have finished).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec
from threadpoolctl import threadpool_limits

from daemon.activity import Activity
from daemon.additions import Additions
from daemon.audit import Audit
from daemon.backends import database_bus, lexical_index, open_store, vector_index
from daemon.backup import scheduled_backups
from daemon.config import NO_MODEL, Config, model_cache_dir
from daemon.context_packs import ContextPacks
from daemon.cubes import Cubes
from daemon.daemon_status import StatusReporter, StoredStatus, stored_status
from daemon.embedder import Embedder
from daemon.entities import EntityIndex
from daemon.events import ChangeHub
from daemon.fairness import FairGate
from daemon.heap import tune_heaps
from daemon.idempotency import Recorder, idempotent
from daemon.identity import Groups, Identities
from daemon.links import Links
from daemon.memories import Memories
from daemon.metrics_history import MetricsHistory, queue_depths
from daemon.models import Agent
from daemon.policy import AccessPolicy
from daemon.policy_watch import PolicyWatcher
from daemon.redaction import Redactor
from daemon.reranker import Reranker
from daemon.retention import Retention
from daemon.scheduler import Scheduler
from daemon.search import Search
from daemon.settings_store import CubeSettingsStore
from daemon.sign_in_links import SignInLinks
from daemon.store import Store
from daemon.supervision import supervised
from daemon.tasks import Tasks
from daemon.transfer import (
    ImportDefaults,
    ImportReport,
    Located,
    MemoryRecord,
    Redaction,
    export_all,
    export_records,
    import_lines,
)
from daemon.transfer_records import SetupRecord
from daemon.vectors import VectorIndex
from daemon.working_memory import WorkingMemory

log = logging.getLogger(__name__)
T = TypeVar("T", bound=msgspec.Struct)


@dataclass(frozen=True)
class Services:
    """The service API the MCP layer and the CLI call; no caller touches SQL."""

    config: Config
    store: Store
    embedder: Embedder
    reranker: Reranker
    vectors: VectorIndex
    entities: EntityIndex
    audit: Audit
    access: AccessPolicy
    policy_watcher: PolicyWatcher
    identities: Identities
    groups: Groups
    cubes: Cubes
    memories: Memories
    links: Links
    additions: Additions
    settings: CubeSettingsStore
    retention: Retention
    hub: ChangeHub
    working: WorkingMemory
    scheduler: Scheduler
    tasks: Tasks
    packs: ContextPacks
    search: Search
    activity: Activity
    sign_in_links: SignInLinks
    metrics: MetricsHistory  # search latency and queue depth per minute, for the dashboard's charts

    async def idempotent(
        self,
        agent: Agent,
        key: str | None,
        tool: str,
        arguments: Any,
        result_type: type[T],
        write: Callable[[Recorder | None], Awaitable[T]],
    ) -> T:
        """Run `write` once per (agent, key): a retry with the key returns the first result and writes
        nothing (daemon/idempotency.py); `write` records its result through the recorder it is given."""
        return await idempotent(self.store, agent, key, tool, arguments, result_type, write)

    async def stored_status(self) -> StoredStatus:
        """What the database says about itself and its daemon, for `memos status`."""
        return await stored_status(self.store)

    def status_reporter(self, version: str, url: str) -> StatusReporter:
        """The reporter that keeps this daemon's status in the database for `memos status`."""
        return StatusReporter(self.store, version, url, self.embedder, self.vectors, self.scheduler)

    def export(
        self, *, everything: bool = False, cubes: list[str] | None = None
    ) -> AsyncIterator[MemoryRecord | SetupRecord]:
        """The export lines: every memory (of `cubes`, if given), or with `everything` the cubes, agents,
        groups, grants and tasks first (daemon/transfer.py)."""
        return export_all(self.store) if everything else export_records(self.store, cubes)

    async def import_lines(
        self, lines: Iterable[str | Located], defaults: ImportDefaults, *, strict: bool = False
    ) -> ImportReport:
        """Import export lines (or located items of another source), redacting secrets where the cube's
        settings say so (daemon/transfer.py)."""
        redaction = Redaction(settings=self.settings, redactor=Redactor(self.config.redaction.patterns))
        return await import_lines(
            self.store, lines, defaults, self.config.limits, strict=strict, redaction=redaction
        )


@asynccontextmanager
async def open_store_services(config: Config, *, with_model: bool = False) -> AsyncIterator[Services]:
    """The services for one CLI command: the policy files read once, no watchers or scheduled work.

    Without a model, writes leave vectors to the daemon's backfill (so its in-memory vectors stay
    complete); with one (for `memos search`), vectors are searched in the database. The model is used only
    if it is on disk: a command never waits for a download, it answers lexically and says why.
    """
    store = await open_store(config)
    try:
        embedder_config = (
            config.embedder if with_model else msgspec.structs.replace(config.embedder, model=NO_MODEL)
        )
        # Nor a re-ranker: loading one would cost a one-off command more than it saves.
        no_cache = msgspec.structs.replace(
            config,
            search=msgspec.structs.replace(config.search, vector_cache=False),
            reranker=msgspec.structs.replace(config.reranker, model=NO_MODEL, model_path=None),
        )
        # A command never downloads the model: without a local copy it answers lexically and says so.
        embedder = Embedder(embedder_config, model_cache_dir(), local_only=True)
        services = _services(no_cache, store, embedder)
        await services.policy_watcher.reload(publish=False)
        async with anyio.create_task_group() as tg:
            await tg.start(services.embedder.run)
            await services.embedder.settled.wait()
            if services.embedder.state == "ready":
                await services.vectors.attach(read_only=True)
            try:
                yield services
            finally:
                tg.cancel_scope.cancel()
    finally:
        await store.close()


@asynccontextmanager
async def open_services(config: Config) -> AsyncIterator[Services]:
    """The full daemon core: store, embedding model (loading in the background) and backfill."""
    # One BLAS thread: onnxruntime's pool already uses every core, and two pools of spinning threads on
    # the same cores slow each other down (measured at 100k memories: search p50 76 -> 47 ms, an add with
    # its similarity check 41 -> 19 ms, embedding throughput unchanged). Process-wide, hence here.
    threadpool_limits(1, user_api="blas")
    tune_heaps()  # model tensors handed back when freed, a search's temporaries reused (daemon/heap.py)
    store = await open_store(config)
    try:
        services = _services(config, store, Embedder(config.embedder, model_cache_dir()))
        async with anyio.create_task_group() as tg:
            # Each loop under the one supervision rule (daemon/supervision.py).
            await tg.start(supervised, "audit", services.audit.run)
            await tg.start(supervised, "scheduler", services.scheduler.run)
            services.vectors.scheduler = services.retention.scheduler = services.scheduler
            await tg.start(supervised, "context packs", services.packs.run)
            await tg.start(supervised, "policy watcher", services.policy_watcher.run)
            await tg.start(
                supervised, "revocation watch", partial(services.identities.watch_revocations, services.hub)
            )
            await tg.start(supervised, "embedder", services.embedder.run)
            await tg.start(supervised, "re-ranker", services.reranker.run)
            await tg.start(supervised, "vector backfill", services.vectors.backfill)
            await tg.start(supervised, "entity backfill", services.entities.backfill)
            if services.search.lexical_index is not None:
                await tg.start(supervised, "lexical index", services.search.lexical_index.run)
            await tg.start(supervised, "retention", services.retention.run)
            depths = queue_depths(services.scheduler.snapshot, services.search.gate.waiting)
            await tg.start(supervised, "metrics history", partial(services.metrics.run, depths))
            bus = database_bus(store, services.hub, services.vectors)
            if bus is not None:  # several daemons on one PostgreSQL database
                await tg.start(supervised, "database bus", bus)
            if config.backup.interval_hours > 0 and config.storage.url is None:  # a server keeps its own
                backups = partial(
                    scheduled_backups, config.database_path, config.backup_dir,
                    config.backup.interval_hours * 3600, config.backup.keep,
                )  # fmt: skip
                await tg.start(supervised, "scheduled backups", backups)
            try:
                yield services
            finally:
                services.policy_watcher.stop()
                tg.cancel_scope.cancel("memosd is shutting down")
    finally:
        await store.close()


def _services(config: Config, store: Store, embedder: Embedder) -> Services:
    hub, working, scheduler = ChangeHub(), WorkingMemory(), Scheduler(workers=config.context.workers)
    audit = Audit(store)
    access = AccessPolicy(audit)
    vectors = vector_index(
        store, embedder, use_cache=config.search.vector_cache, precision=config.search.vector_precision
    )
    settings = CubeSettingsStore(store, access, redact_secrets=config.redaction.enabled)
    redactor = Redactor(config.redaction.patterns)
    memories = Memories(
        store, access, vectors, config.limits, hub, working, settings=settings, redactor=redactor
    )
    reranker = Reranker(config.reranker, model_cache_dir())
    metrics = MetricsHistory()
    # Searches beyond the slots wait, agents taking turns; each search's time goes to the history.
    gate = FairGate(slots=store.search_slots, observe=metrics.search_took)
    search = Search(store, memories, vectors, config.limits, config.search, reranker, gate)
    search.lexical_index = lexical_index(store, config)
    tasks = Tasks(store, access, hub, working, redactor=redactor if config.redaction.enabled else None)
    return Services(
        config=config,
        store=store,
        embedder=embedder,
        reranker=reranker,
        vectors=vectors,
        entities=EntityIndex(store),
        audit=audit,
        access=access,
        policy_watcher=PolicyWatcher(
            access,
            store,
            config.policy_dir,
            Path(config.source) if config.source != "defaults" else None,
            hub,
        ),
        identities=Identities(store),
        groups=Groups(store),
        cubes=Cubes(store, access, hub),
        memories=memories,
        links=Links(store, access, memories, hub),
        additions=Additions(
            store, access, vectors, memories, settings, config.limits, hub, working, redactor=redactor
        ),
        settings=settings,
        retention=Retention(store, settings),
        search=search,
        activity=Activity(store, access),
        sign_in_links=SignInLinks(store),
        metrics=metrics,
        hub=hub,
        working=working,
        scheduler=scheduler,
        tasks=tasks,
        packs=ContextPacks(
            store,
            access,
            tasks,
            search,
            memories,
            embedder,
            scheduler,
            hub,
            working,
            config.context.budget_tokens,
        ),
    )
