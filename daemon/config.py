"""Typed configuration: `memos.toml` decoded into strict msgspec Structs, read in one place.

Precedence: an explicit path (`--config`), then `$MEMOS_CONFIG`, then `$XDG_CONFIG_HOME/memos/memos.toml` if it
exists, else the defaults below (which the repository's `memos.toml` spells out). Relative paths inside a file
are resolved against the file's directory, so a config works wherever the daemon is started from.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from daemon.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

DEFAULT_PORT = 7077
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
NO_MODEL = "none"

_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(.*)`")
# [search] keys of the first pipeline (reciprocal rank fusion only), and where their meaning lives now.
_MOVED_SEARCH_KEYS = {
    **{
        f"{name}_weight": f'[search.rrf] {name}, with fusion = "rrf" (the blend, [search.blend] {name}, weighs'
        " signal scores on another scale: leave it out to keep the fitted default)"
        for name in ("lexical", "exact", "vector", "context", "episode", "time")
    },
    "rrf_k": '[search.rrf] k (with fusion = "rrf")',
}

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[int, msgspec.Meta(ge=1)]


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    host: str = "127.0.0.1"
    port: Port = DEFAULT_PORT
    session_idle_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 1800.0
    max_sessions: Positive = 1000
    # Handshake-era sessions one agent may hold open; more are refused (HTTP 429), so an agent that leaks
    # sessions cannot use up `max_sessions` for the others.
    max_sessions_per_agent: Positive = 100
    max_request_bytes: Positive = 4 * 1024 * 1024
    # Seconds a client has to send a whole request (head and body), counted from the connection's opening
    # or the previous response, and to take a response it has stopped reading; then the connection is
    # closed, so slow or stalled clients cannot hold connections forever.
    client_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # Connections served at once; past it the oldest idle one is closed, or the new one refused. None: the
    # open-files limit less a reserve (memosd raises the soft limit to the hard one at start).
    max_connections: Positive | None = None


class StorageConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    # None: `$XDG_DATA_HOME/memos/memos.db`.
    path: str | None = None
    # A PostgreSQL database (with pgvector) instead of the file: "postgresql://user:password@host/db". Several
    # memosd may serve one database (the team server); `path` then only places the daemon's local files.
    url: Annotated[str, msgspec.Meta(pattern=r"^postgres(ql)?://")] | None = None
    read_connections: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2


class EmbedderConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    # A fastembed model name, or "none" for lexical-only search.
    model: str = DEFAULT_MODEL
    # A local directory holding the ONNX export; None downloads the model through fastembed.
    model_path: str | None = None
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 64
    # Tokens of a text the model reads; the rest is cut. all-MiniLM-L6-v2 was trained on 256-token windows
    # (sentence-transformers cuts there); fastembed would otherwise cut at 512, which gives other vectors
    # for long texts and costs four times the attention work.
    max_tokens: Annotated[int, msgspec.Meta(ge=8, le=8192)] = 256
    # Tokens per model call (texts × the longest one's tokens): what bounds the model's working memory.
    batch_tokens: Annotated[int, msgspec.Meta(ge=256, le=1_048_576)] = 512
    threads: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # "int8": memosd quantizes the float ONNX model once (int8 weights per channel, ~23 MB instead of 90)
    # and embeds with that copy: ~2.3x less CPU a text, 65 MiB less RSS at 100k memories, and the same recall
    # (LME dev60 any@10 / all@10 / NDCG@10 0.982 / 0.930 / 0.819 at both; LoCoMo dev5 0.800 against 0.801;
    # bench/README.md, "Quantized embedder"). "float32": the model as published. Changing it re-embeds every
    # memory in the background, search being lexical until that is done.
    precision: Literal["int8", "float32"] = "int8"
    # Where the int8 copy is kept; None: $XDG_CACHE_HOME/memos/quantized.
    quantized_dir: str | None = None

    @property
    def identity(self) -> str:
        """What the stored vectors were made by (the meta table's `embedding_model`): another precision
        gives other vectors, so it is another model."""
        return self.model if self.precision == "float32" else f"{self.model} (int8)"


class RerankerConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    # Off by default: a cross-encoder reads the query with each of the best fused results and re-orders
    # them. A fastembed cross-encoder name (e.g. "Xenova/ms-marco-MiniLM-L-6-v2", downloaded on first use),
    # or "none".
    model: str = NO_MODEL
    # A local directory holding model.onnx with its tokenizer files (tokenizer.json, tokenizer_config.json,
    # special_tokens_map.json); with it, `model` is only the name it is logged under.
    model_path: str | None = None
    candidates: Annotated[int, msgspec.Meta(ge=2, le=200)] = 20  # the fused top results it re-orders
    max_tokens: Annotated[int, msgspec.Meta(ge=16, le=8192)] = 512  # of query and memory together
    threads: Annotated[int, msgspec.Meta(ge=1)] | None = None

    @property
    def enabled(self) -> bool:
        return self.model != NO_MODEL or self.model_path is not None


class LimitsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    max_content_bytes: Positive = 64 * 1024
    max_batch: Positive = 1000
    max_tags: Positive = 32
    max_tag_chars: Positive = 64
    max_metadata_bytes: Positive = 16 * 1024
    max_query_chars: Positive = 4096
    max_k: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class PoliciesConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    # Relative to the configuration file; without a file, to $XDG_CONFIG_HOME/memos.
    dir: str = "policies"


Weight = Annotated[float, msgspec.Meta(ge=0, le=100)]


class BlendWeights(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """score = Σ weight × signal, each signal a number from 0 to 1 (0 turns a signal off). The signal set (and
    [search] episode_spread) was chosen by cross-validation across LoCoMo dev5 (leave one conversation out) and
    all 57 LongMemEval-S dev60 questions, and the weights fitted on all of them by pairwise logistic
    regression; entity and graph did not win on both (bench/README.md)."""

    lexical: Weight = 3.16  # BM25 over stemmed words, relative to this search's best match
    # Cosine similarity of the embeddings (below 0 counts as 0): 0 by default, because context and episode
    # carry it (a memory outside any conversation scores its own similarity in both).
    vector: Weight = 0.0
    exact: Weight = 0.0  # the query's names, numbers and identifiers as phrases, relative to the best match
    context: Weight = 9.12  # a conversation turn's similarity together with the turn it answers
    episode: Weight = 6.62  # the mean similarity of the best 3 turns of the turn's session or thread
    time: Weight = 5.03  # 1 inside the time the query names ("last week", "in May")
    # 0 for a conversation turn by the other speaker than the question asks about (metadata role: "you
    # recommended" asks for the assistant's words, anything else for the user's; metadata speaker: the one
    # person the question names), else 1.
    speaker: Weight = 4.10
    entity: Weight = 0.0  # the share of the query's entities (names, numbers, dates) it mentions, by rarity
    graph: Weight = 0.0  # reached from the best first-stage hits through a rare shared entity or a link


class RankWeights(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Weighted reciprocal rank fusion: score = Σ weight / (k + rank) over each signal's ranking."""

    # Smaller k lets a memory that one signal ranks first beat ones several signals rank middling (60 is
    # the textbook value; 15 did better in cross-validation).
    k: Annotated[float, msgspec.Meta(ge=1, le=1000)] = 15.0
    lexical: Weight = 1.0
    vector: Weight = 1.0
    exact: Weight = 0.0
    context: Weight = 0.0
    episode: Weight = 0.0  # the rank of the turn's session or thread
    time: Weight = 1.0


class SearchConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    # Keep a copy of the vectors in memory for fast exact search (~1.5 KiB per memory with MiniLM);
    # false: search them with sqlite-vec's KNN inside the database (slower, no extra memory).
    vector_cache: bool = True
    # How the cache holds them: "int8" (1 byte a dimension, ~0.4 KiB a memory; every row ranked by an integer
    # product, the best few hundred re-scored from the stored float32 vectors: the same top k) or "float32".
    vector_precision: Literal["int8", "float32"] = "int8"
    # Where the lexical signal's BM25 is computed: "memory" (postings of FTS5's tokens held in memory, ~25 MiB
    # at 100k memories, ~4x less CPU a query, the same scores) or "sql" (FTS5's bm25(), no extra memory).
    lexical_index: Literal["memory", "sql"] = "memory"
    # Ranking: score × (1 + recency_weight · 2^(-age/half-life) + importance_weight · (importance − 0.5)).
    recency_weight: Annotated[float, msgspec.Meta(ge=0)] = 0.02
    recency_half_life_days: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    importance_weight: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.1
    # How the signals are fused: "blend" (a linear blend of their scores, [search.blend]) or "rrf"
    # (reciprocal rank fusion of their rankings, [search.rrf]). The blend won by cross-validation.
    fusion: Literal["blend", "rrf"] = "blend"
    candidates: Annotated[int, msgspec.Meta(ge=10, le=2000)] = 100  # per signal, before fusion
    context_neighbour_share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5  # each neighbour's share
    # The turns before and after a turn that the context signal blends in. A turn is best read with the one
    # it answers ("What did you paint?" - "A horse"); the turn after it lowered LongMemEval's NDCG.
    context_before: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    context_after: Annotated[int, msgspec.Meta(ge=0, le=5)] = 0
    # A question that names speakers of the conversation turns it searches ("What has Melanie painted?") is
    # searched again without their names: her own turns seldom say it, the other's greetings do. The speaker
    # signal still favours her turns. Only with the blend and a speaker weight above 0.
    drop_named_speaker: bool = True
    # With the blend: each turn of a session or thread beyond its 3 best in the ranking is multiplied by
    # (1 - episode_spread) for each turn of the session above it beyond those 3, so that one session's cluster
    # of similar turns gives way to another session's turn that scores nearly as well (questions that gather
    # several sessions). 0 turns it off.
    episode_spread: Annotated[float, msgspec.Meta(ge=0, lt=1)] = 0.02
    blend: BlendWeights = msgspec.field(default_factory=BlendWeights)
    rrf: RankWeights = msgspec.field(default_factory=RankWeights)

    def weight(self, signal: str) -> float:
        """The chosen fusion's weight of a signal (0: the signal is not computed; RRF has no speaker)."""
        weights = self.blend if self.fusion == "blend" else self.rrf
        if signal in weights.__struct_fields__:
            return float(getattr(weights, signal))
        if signal in BlendWeights.__struct_fields__:
            return 0.0
        raise ValueError(f"no search signal is called {signal!r}")


class BackupConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    # None: `backups` beside the database.
    dir: str | None = None
    # Hours between scheduled backups; 0 turns them off.
    interval_hours: Annotated[float, msgspec.Meta(ge=0)] = 24.0
    keep: Annotated[int, msgspec.Meta(ge=1)] = 7


class ContextConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    # Tokens (the embedding model's tokenizer) one context pack may hold, task header included.
    budget_tokens: Annotated[int, msgspec.Meta(ge=100, le=100_000)] = 2000
    # Scheduler workers building packs and other jobs.
    workers: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2


class RedactionConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    # Mask well-known secrets (API keys, tokens, private keys, passwords) as [REDACTED:kind] before a memory
    # is stored, for every cube; a cube's `redact_secrets` setting overrides this either way.
    enabled: bool = False
    # More regular expressions to mask (kind "custom"); a group named `secret` masks only that group.
    patterns: list[str] = msgspec.field(default_factory=list)


class UiConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    # The dashboard at /ui on the server's port; false serves the MCP endpoint alone.
    enabled: bool = True
    # A dashboard session unused this long is signed out.
    session_idle_minutes: Annotated[float, msgspec.Meta(gt=0)] = 720.0


class LogConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    embedder: EmbedderConfig = msgspec.field(default_factory=EmbedderConfig)
    reranker: RerankerConfig = msgspec.field(default_factory=RerankerConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    policies: PoliciesConfig = msgspec.field(default_factory=PoliciesConfig)
    search: SearchConfig = msgspec.field(default_factory=SearchConfig)
    backup: BackupConfig = msgspec.field(default_factory=BackupConfig)
    context: ContextConfig = msgspec.field(default_factory=ContextConfig)
    redaction: RedactionConfig = msgspec.field(default_factory=RedactionConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    ui: UiConfig = msgspec.field(default_factory=UiConfig)
    # Where the configuration came from ("defaults" or a file path); set by the loader, not by the file.
    source: str = "defaults"

    @property
    def database_path(self) -> Path:
        assert self.storage.path is not None, "load_config resolves the storage path"
        return Path(self.storage.path)

    @property
    def database_label(self) -> str:
        """The store as a user should see it named: the file, or the PostgreSQL URL without its password."""
        if self.storage.url is not None:
            return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", self.storage.url)
        return str(self.database_path)

    @property
    def database_exists(self) -> bool:
        """Whether there is a store to read (never created by looking): a server database is taken to be."""
        return self.storage.url is not None or self.database_path.exists()

    @property
    def backup_dir(self) -> Path:
        return Path(self.backup.dir) if self.backup.dir else self.database_path.parent / "backups"

    @property
    def policy_dir(self) -> Path:
        return Path(self.policies.dir)


def _xdg(environ: Mapping[str, str], var: str, fallback: str) -> Path:
    value = environ.get(var)
    return Path(value) if value else Path(environ.get("HOME", str(Path.home()))) / fallback


def default_config_path(environ: Mapping[str, str]) -> Path:
    return _xdg(environ, "XDG_CONFIG_HOME", ".config") / "memos" / "memos.toml"


def locate_config(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read, or None for the built-in defaults."""
    if explicit:
        return Path(explicit)
    if environ.get("MEMOS_CONFIG"):
        return Path(environ["MEMOS_CONFIG"])
    user_file = default_config_path(environ)
    return user_file if user_file.is_file() else None


def _location(parts: list[str]) -> str:
    """`["server", "port"]` -> `[server] port`, the way a TOML user reads it."""
    if not parts:
        return "the top level"
    if len(parts) == 1:
        return parts[0]
    return f"[{'.'.join(parts[:-1])}] {parts[-1]}"


def parse_config(text: str, source: str) -> Config:
    """Decode TOML text into a Config; every error names the source, the key and what was expected."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    if "source" in raw:
        raise ConfigError(f"{source}: source: unknown key")
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `")
        parts = [p for p in where.rstrip("`").removeprefix("$").split(".") if p]
        unknown = _UNKNOWN_FIELD.fullmatch(message)
        if unknown:
            parts.append(unknown.group(1))
            message = "unknown key (memos.toml in the repository lists every key)"
            moved = _MOVED_SEARCH_KEYS.get(parts[-1]) if parts[:-1] == ["search"] else None
            if moved:
                message = f"unknown key: it moved to {moved}"
        raise ConfigError(f"{source}: {_location(parts)}: {message}") from exc
    for index, pattern in enumerate(config.redaction.patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"{source}: [redaction] patterns[{index}]: {pattern!r} is not a regular expression: {exc}"
            ) from None
    return config


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def load_config(
    explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Find, read and validate the configuration, with every path made absolute."""
    env = os.environ if environ is None else environ
    path = locate_config(explicit, env)
    if path is None:
        config, base = Config(), default_config_path(env).parent
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: the configuration file is not valid UTF-8") from exc
        config, base = parse_config(text, str(path)), path.parent.resolve()
    data_dir = _xdg(env, "XDG_DATA_HOME", ".local/share") / "memos"
    storage_path = _resolve(base, config.storage.path) or str(data_dir / "memos.db")
    return msgspec.structs.replace(
        config,
        storage=msgspec.structs.replace(config.storage, path=storage_path),
        embedder=msgspec.structs.replace(
            config.embedder,
            model_path=_resolve(base, config.embedder.model_path),
            quantized_dir=_resolve(base, config.embedder.quantized_dir),
        ),
        reranker=msgspec.structs.replace(
            config.reranker, model_path=_resolve(base, config.reranker.model_path)
        ),
        policies=msgspec.structs.replace(config.policies, dir=_resolve(base, config.policies.dir) or ""),
        backup=msgspec.structs.replace(config.backup, dir=_resolve(base, config.backup.dir)),
        source=str(path) if path else "defaults",
    )


def model_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where fastembed keeps a downloaded model."""
    env = os.environ if environ is None else environ
    return _xdg(env, "XDG_CACHE_HOME", ".cache") / "memos" / "models"
