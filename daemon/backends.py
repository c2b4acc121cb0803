"""Which store a configuration names: the SQLite file (the default) or a PostgreSQL database.

The one place that chooses; everything above it sees the same `Store`/`Connection` interface. psycopg is
imported only when a `[storage] url` asks for PostgreSQL, so the embedded default needs nothing more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from daemon.config import Config
from daemon.embedder import Embedder
from daemon.errors import ConfigError
from daemon.events import ChangeHub
from daemon.lexical_index import LexicalIndex
from daemon.store import Store
from daemon.vector_cache import Precision
from daemon.vectors import VectorIndex


async def open_store(config: Config) -> Store:
    """Open (creating and migrating as needed) the configured store."""
    if config.storage.url is None:
        return await Store.open(config.database_path, read_connections=config.storage.read_connections)
    try:
        from daemon.pg_store import PgStore
    except ImportError as exc:
        raise ConfigError(
            "[storage] url names a PostgreSQL database, but psycopg is not installed:"
            ' pip install "memosd[postgres]"'
        ) from exc
    return await PgStore.open_url(config.storage.url, read_connections=config.storage.read_connections)


def vector_index(
    store: Store, embedder: Embedder, *, use_cache: bool, precision: Precision = "float32"
) -> VectorIndex:
    """The vector index for the store's backend."""
    if store.dialect == "postgresql":
        from daemon.pg_vectors import PgVectorIndex

        return PgVectorIndex(store, embedder, use_cache=use_cache, precision=precision)
    return VectorIndex(store, embedder, use_cache=use_cache, precision=precision)


def lexical_index(store: Store, config: Config) -> LexicalIndex | None:
    """BM25 in memory over FTS5's postings (daemon/lexical_index.py), when asked for and the store is the
    SQLite file; PostgreSQL ranks with its own text search (daemon/pg_text.py)."""
    if config.search.lexical_index != "memory" or store.dialect == "postgresql":
        return None
    return LexicalIndex(store)


def database_bus(store: Store, hub: ChangeHub, vectors: VectorIndex) -> Callable[..., Awaitable[None]] | None:
    """The background loop that links the daemons sharing a PostgreSQL database (daemon/pg_bus.py); None
    for the SQLite file, which one daemon serves alone."""
    if store.dialect != "postgresql":
        return None
    from daemon.pg_bus import PgBus
    from daemon.pg_store import PgStore
    from daemon.pg_vectors import PgVectorIndex

    assert isinstance(store, PgStore) and isinstance(vectors, PgVectorIndex)
    return PgBus(store.url, hub, vectors).run
