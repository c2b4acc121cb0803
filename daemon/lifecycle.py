"""The daemon's core lifespan: open the store, start the background services, yield the service API.

`open_services` is the one place that owns background work: the embedder and the vector backfill run in the
task group it opens, and leaving the block cancels them and then closes the store (after in-flight writes,
which hold the store's write lock, have finished).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import msgspec

from daemon.audit import Audit
from daemon.config import NO_MODEL, Config, model_cache_dir
from daemon.cubes import Cubes
from daemon.embedder import Embedder
from daemon.identity import Groups, Identities
from daemon.memories import Memories
from daemon.policy import AccessPolicy
from daemon.policy_watch import PolicyWatcher
from daemon.search import Search
from daemon.store import Store
from daemon.vectors import VectorIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """The service API the MCP layer and the CLI call; no caller touches SQL."""

    config: Config
    store: Store
    embedder: Embedder
    vectors: VectorIndex
    audit: Audit
    access: AccessPolicy
    identities: Identities
    groups: Groups
    cubes: Cubes
    memories: Memories
    search: Search


@asynccontextmanager
async def open_store_services(config: Config) -> AsyncIterator[Services]:
    """The services without background work or a model: for CLI commands that only read and write rows."""
    store = await Store.open(config.database_path, read_connections=config.storage.read_connections)
    try:
        no_model = msgspec.structs.replace(config.embedder, model=NO_MODEL)
        yield _services(config, store, Embedder(no_model, model_cache_dir()))
    finally:
        await store.close()


@asynccontextmanager
async def open_services(config: Config) -> AsyncIterator[Services]:
    """The full daemon core: store, embedding model (loading in the background) and backfill."""
    store = await Store.open(config.database_path, read_connections=config.storage.read_connections)
    try:
        services = _services(config, store, Embedder(config.embedder, model_cache_dir()))
        async with anyio.create_task_group() as tg:
            await tg.start(services.audit.run)
            config_file = Path(config.source) if config.source != "defaults" else None
            watcher = PolicyWatcher(services.access, store, config.policy_dir, config_file)
            await tg.start(watcher.run)
            await tg.start(services.embedder.run)
            await tg.start(services.vectors.backfill)
            try:
                yield services
            finally:
                watcher.stop()
                tg.cancel_scope.cancel("memosd is shutting down")
    finally:
        await store.close()


def _services(config: Config, store: Store, embedder: Embedder) -> Services:
    audit = Audit(store)
    access = AccessPolicy(audit)
    vectors = VectorIndex(store, embedder, use_cache=config.search.vector_cache)
    memories = Memories(store, access, vectors, config.limits)
    return Services(
        config=config,
        store=store,
        embedder=embedder,
        vectors=vectors,
        audit=audit,
        access=access,
        identities=Identities(store),
        groups=Groups(store),
        cubes=Cubes(store, access),
        memories=memories,
        search=Search(store, memories, vectors, config.limits),
    )
