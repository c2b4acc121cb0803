"""Checks on caller input that every entry point shares; each failure names the field and the limit."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from daemon.config import LimitsConfig
from daemon.errors import InvalidInput, shown
from daemon.models import MEMORY_KINDS, MemoryChanges, NewMemory
from daemon.timeutil import parse_time

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PRIVATE_CUBE_PREFIX = "@"


def check_name(value: str, what: str) -> str:
    """Agent and cube names: 1-64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"{what} {shown(value)} is not valid: use 1-64 ASCII letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return value


def private_cube_of(agent_name: str) -> str:
    return PRIVATE_CUBE_PREFIX + agent_name


def check_cube_ref(value: str) -> str:
    """A cube a caller names: a shared cube name or an agent's private `@agent` cube."""
    name = value.removeprefix(PRIVATE_CUBE_PREFIX) if isinstance(value, str) else value
    check_name(name, "cube name")
    return value


def _check_text(value: str, field: str, max_bytes: int) -> str:
    if "\x00" in value:
        raise InvalidInput(f"{field} contains a NUL character")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} is not valid UTF-8 (it contains an unpaired surrogate)") from None
    if size > max_bytes:
        raise InvalidInput(
            f"{field} is {size} bytes; the limit is {max_bytes} bytes ([limits] in memos.toml)"
        )
    return value


def check_content(value: str, limits: LimitsConfig, field: str = "content") -> str:
    if not value.strip():
        raise InvalidInput(f"{field} is empty: a memory needs some text")
    return _check_text(value, field, limits.max_content_bytes)


def check_tags(tags: list[str], limits: LimitsConfig, field: str = "tags") -> list[str]:
    if len(tags) > limits.max_tags:
        raise InvalidInput(f"{field}: {len(tags)} tags; the limit is {limits.max_tags}")
    clean: list[str] = []
    for tag in tags:
        tag = tag.strip()
        if not tag:
            raise InvalidInput(f"{field}: a tag is empty")
        if len(tag) > limits.max_tag_chars:
            raise InvalidInput(f"{field}: tag {tag[:20]!r}… is longer than {limits.max_tag_chars} characters")
        _check_text(tag, field, limits.max_tag_chars * 4)
        if tag not in clean:
            clean.append(tag)
    return clean


# JSON parsers stop at some depth (pydantic's, in the MCP SDK's client, at 200 levels for a whole message):
# deeper metadata would be stored but could never be read back through a result.
MAX_METADATA_DEPTH = 32


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and "\x00" in item:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def check_metadata(metadata: dict[str, Any], limits: LimitsConfig, field: str = "metadata") -> dict[str, Any]:
    if _deeper_than(metadata, MAX_METADATA_DEPTH):
        raise InvalidInput(f"{field} is nested more than {MAX_METADATA_DEPTH} levels deep; flatten it")
    if _has_nul(metadata):  # as in content: no store keeps it the same (PostgreSQL's JSON refuses it)
        raise InvalidInput(f"{field} contains a NUL character")
    try:
        encoded = msgspec.json.encode(metadata)
    except (TypeError, OverflowError, msgspec.EncodeError) as exc:
        raise InvalidInput(f"{field} must be a JSON object: {exc}") from None
    if len(encoded) > limits.max_metadata_bytes:
        raise InvalidInput(
            f"{field} is {len(encoded)} bytes as JSON; the limit is {limits.max_metadata_bytes} bytes"
        )
    _check_text(encoded.decode("utf-8", "surrogatepass"), field, limits.max_metadata_bytes)
    return metadata


def check_importance(value: float, field: str = "importance") -> float:
    if not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InvalidInput(f"{field} must be a number from 0 to 1, got {value!r}")
    return float(value)


def check_kind(value: str, field: str = "kind") -> str:
    if value not in MEMORY_KINDS:
        raise InvalidInput(f"{field} {value!r} is not one of: {', '.join(MEMORY_KINDS)}")
    return value


def check_new_memory(item: NewMemory, limits: LimitsConfig, field: str = "") -> NewMemory:
    """Validate and normalise one new memory; `field` prefixes messages (e.g. `items[3].`)."""
    return NewMemory(
        content=check_content(item.content, limits, f"{field}content"),
        kind=check_kind(item.kind, f"{field}kind"),  # type: ignore[arg-type]
        tags=check_tags(item.tags, limits, f"{field}tags"),
        metadata=check_metadata(item.metadata, limits, f"{field}metadata"),
        occurred_at=parse_time(item.occurred_at, f"{field}occurred_at") if item.occurred_at else None,
        importance=check_importance(item.importance, f"{field}importance"),
        expires_at=parse_time(item.expires_at, f"{field}expires_at") if item.expires_at else None,
        task_id=_check_text(item.task_id, f"{field}task_id", 256) if item.task_id else None,
    )


def check_changes(changes: MemoryChanges, limits: LimitsConfig) -> MemoryChanges:
    if all(getattr(changes, f) is None for f in changes.__struct_fields__):
        raise InvalidInput("nothing to update: give at least one of content, kind, tags, metadata, ...")
    return MemoryChanges(
        content=check_content(changes.content, limits) if changes.content is not None else None,
        kind=check_kind(changes.kind) if changes.kind is not None else None,  # type: ignore[arg-type]
        tags=check_tags(changes.tags, limits) if changes.tags is not None else None,
        metadata=check_metadata(changes.metadata, limits) if changes.metadata is not None else None,
        occurred_at=parse_time(changes.occurred_at, "occurred_at") if changes.occurred_at else None,
        importance=check_importance(changes.importance) if changes.importance is not None else None,
        expires_at=parse_time(changes.expires_at, "expires_at") if changes.expires_at else None,
    )
