"""Timestamps: stored as fixed-width UTC ISO-8601 text so that text order is time order."""

from __future__ import annotations

from datetime import datetime, timezone

from daemon.errors import InvalidInput

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(_FORMAT)


def now_iso() -> str:
    return format_time(datetime.now(timezone.utc))


def parse_time(value: str, field: str) -> str:
    """Normalise a caller's ISO-8601 date or date-time; a time without an offset is taken as UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{field}: {value!r} is not an ISO-8601 date or date-time (e.g. 2026-05-01 or 2026-05-01T14:30:00Z)"
        ) from None
    return format_time(moment)
