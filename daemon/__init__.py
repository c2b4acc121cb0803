"""The memos core: configuration, store, cubes, memories, search and the daemon's lifespan.

Everything another package may use is re-exported here; `tests/test_public_surface.py` keeps the list true.
"""

from daemon.config import Config, load_config
from daemon.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    MemosError,
    NotFound,
    Overloaded,
    PermissionDenied,
    StoreClosed,
    StoreCorrupt,
    StoreError,
    Unauthenticated,
    Unavailable,
)
from daemon.filters import MemoryFilter
from daemon.identity import agent_named
from daemon.lifecycle import Services, open_services, open_store_services
from daemon.models import (
    MEMORY_KINDS,
    Agent,
    AgentInfo,
    Cube,
    CubeMembers,
    MatchInfo,
    Member,
    Memory,
    MemoryChanges,
    MemoryKind,
    MemoryPage,
    MemoryVersion,
    NewMemory,
    SearchHit,
    SearchMode,
    SearchQuery,
    SearchResults,
)

__all__ = [
    "MEMORY_KINDS",
    "Agent",
    "AgentInfo",
    "Config",
    "ConfigError",
    "Conflict",
    "Cube",
    "CubeMembers",
    "InvalidInput",
    "MatchInfo",
    "Member",
    "Memory",
    "MemoryChanges",
    "MemoryFilter",
    "MemoryKind",
    "MemoryPage",
    "MemoryVersion",
    "MemosError",
    "NewMemory",
    "NotFound",
    "Overloaded",
    "PermissionDenied",
    "SearchHit",
    "SearchMode",
    "SearchQuery",
    "SearchResults",
    "Services",
    "StoreClosed",
    "StoreCorrupt",
    "StoreError",
    "Unauthenticated",
    "Unavailable",
    "agent_named",
    "load_config",
    "open_services",
    "open_store_services",
]
