"""The memos core: configuration, store, cubes, memories, search and the daemon's lifespan.

Everything another package may use is re-exported here; `tests/test_public_surface.py` keeps the list true.
"""

from daemon.activity import DayCount, StorageFacts, storage_facts
from daemon.backup import backup_database, restore_database
from daemon.collector import set_aside_when_filled
from daemon.config import NO_MODEL, Config, ServerConfig, load_config, model_cache_dir
from daemon.cube_settings import CubeSettings
from daemon.daemon_status import DaemonStatus, StatusReporter, StoredStatus
from daemon.embedder import load_model
from daemon.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    MemosError,
    NotFound,
    Overloaded,
    PermissionDenied,
    StorageFull,
    StoreBusy,
    StoreClosed,
    StoreCorrupt,
    StoreError,
    Unauthenticated,
    Unavailable,
    shown,
)
from daemon.events import AgentRevoked, Change, CubesChanged, MemoryChanged, PackReady, TaskChanged
from daemon.filters import MemoryFilter
from daemon.identity import Identities, agent_named, token_hash
from daemon.import_sources import DEFAULT_KIND, FORMATS, Source
from daemon.instance_lock import InstanceLock
from daemon.integrity import CheckReport, check_database, repair_database
from daemon.lifecycle import Services, open_services, open_store_services
from daemon.links import RELATIONS, LinkChange, LinkedMemory, MemoryLink, Neighbourhood, SharedEntity
from daemon.metrics_history import MinuteStats
from daemon.models import (
    MEMORY_KINDS,
    AddedMemory,
    Agent,
    AgentInfo,
    BatchAdded,
    ContextPack,
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
    PackItem,
    SearchHit,
    SearchMode,
    SearchQuery,
    SearchResults,
    Similar,
    Task,
    TaskNote,
    TaskPage,
)
from daemon.policy import PolicyState
from daemon.private_files import private_dir
from daemon.redaction import LOG_PATTERNS, Redactor
from daemon.sd_notify import Notifier
from daemon.settings_store import ConfiguredCube
from daemon.supervision import retrying, supervised
from daemon.transfer import ImportDefaults, ImportReport, Located, MemoryRecord, encode_record
from daemon.transfer_records import SetupRecord

__all__ = [
    "DEFAULT_KIND",
    "FORMATS",
    "LOG_PATTERNS",
    "MEMORY_KINDS",
    "NO_MODEL",
    "RELATIONS",
    "AddedMemory",
    "Agent",
    "AgentInfo",
    "AgentRevoked",
    "BatchAdded",
    "Change",
    "CheckReport",
    "Config",
    "ConfigError",
    "ConfiguredCube",
    "Conflict",
    "ContextPack",
    "Cube",
    "CubeMembers",
    "CubeSettings",
    "CubesChanged",
    "DaemonStatus",
    "DayCount",
    "Identities",
    "ImportDefaults",
    "ImportReport",
    "InstanceLock",
    "InvalidInput",
    "LinkChange",
    "LinkedMemory",
    "Located",
    "MatchInfo",
    "Member",
    "Memory",
    "MemoryChanged",
    "MemoryChanges",
    "MemoryFilter",
    "MemoryKind",
    "MemoryLink",
    "MemoryPage",
    "MemoryRecord",
    "MemoryVersion",
    "MemosError",
    "MinuteStats",
    "Neighbourhood",
    "NewMemory",
    "NotFound",
    "Notifier",
    "Overloaded",
    "PackItem",
    "PackReady",
    "PermissionDenied",
    "PolicyState",
    "Redactor",
    "SearchHit",
    "SearchMode",
    "SearchQuery",
    "SearchResults",
    "ServerConfig",
    "Services",
    "SetupRecord",
    "SharedEntity",
    "Similar",
    "Source",
    "StatusReporter",
    "StorageFacts",
    "StorageFull",
    "StoreBusy",
    "StoreClosed",
    "StoreCorrupt",
    "StoreError",
    "StoredStatus",
    "Task",
    "TaskChanged",
    "TaskNote",
    "TaskPage",
    "Unauthenticated",
    "Unavailable",
    "agent_named",
    "backup_database",
    "check_database",
    "encode_record",
    "load_config",
    "load_model",
    "model_cache_dir",
    "open_services",
    "open_store_services",
    "private_dir",
    "repair_database",
    "restore_database",
    "retrying",
    "set_aside_when_filled",
    "shown",
    "storage_facts",
    "supervised",
    "token_hash",
]
