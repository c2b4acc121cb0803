"""Per-cube settings: duplicate handling and retention. Policy files give defaults for cubes by name or glob
(`[[cube]]` tables); `cube_configure` stores overrides in the database. Field by field, the database beats the files, and the
files beat the defaults."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec

from daemon.models import MEMORY_KINDS

# Retention counts back from now, so a period must end after year 1 (a thousand years is far from that and
# more than any real rule); a count is bound into SQL, so it must fit SQLite's 64-bit integer.
MAX_DAYS = 365_000
MAX_COUNT = 2**63 - 1
Days = Annotated[float, msgspec.Meta(gt=0, le=MAX_DAYS)]


class CubeSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Every field optional: an unset field falls through to the next source, then to the default."""

    dedupe_exact: bool | None = None  # an exact duplicate (same normalised text, cube, kind) is not stored
    report_similar: bool | None = None  # look for similar memories on add (a vector search per add)
    similar_threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None  # report similar at or above
    max_age_days: Days | None = None  # archive memories older than this
    max_count: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] | None = None  # archive all but the newest N
    ttl_days: dict[str, Days] | None = None  # per kind, e.g. {"message": 90}
    # Mask well-known secrets before a memory is stored (unset: memos.toml's [redaction] enabled).
    redact_secrets: bool | None = None


DEFAULTS = CubeSettings(dedupe_exact=True, report_similar=True, similar_threshold=0.85)


class CubeRule(CubeSettings, kw_only=True, forbid_unknown_fields=True):
    """A `[[cube]]` table in a policy file: settings for the cubes its `name` (or glob) matches."""

    name: str


def check_settings(settings: CubeSettings) -> CubeSettings:
    """The field constraints (a Struct built in code, as the CLI does, skips them) and the kinds named."""
    from daemon.errors import InvalidInput

    fields = msgspec.to_builtins(settings)
    fields.pop("name", None)  # a policy file's [[cube]] table names its cubes; the rest are settings
    try:
        msgspec.convert(fields, CubeSettings)
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc).replace("$.", "")) from None
    for kind in settings.ttl_days or {}:
        if kind not in MEMORY_KINDS:
            raise InvalidInput(f"ttl_days: {kind!r} is not a memory kind ({', '.join(MEMORY_KINDS)})")
    return settings


def merge(*layers: CubeSettings) -> CubeSettings:
    """Later layers win, field by field."""
    merged: dict[str, object] = {}
    for layer in layers:
        merged.update({k: v for k, v in msgspec.structs.asdict(layer).items() if v is not None})
    return msgspec.convert(merged, CubeSettings)


def effective(
    cube: str, file_rules: Sequence[CubeRule], stored: CubeSettings, defaults: CubeSettings = DEFAULTS
) -> CubeSettings:
    from daemon.policy_rules import cube_matches  # policy_rules imports this module for CubeRule

    matching = [
        CubeSettings(**{k: v for k, v in msgspec.structs.asdict(rule).items() if k != "name"})
        for rule in file_rules
        if cube_matches(rule.name, cube)
    ]
    return merge(defaults, *matching, stored)
