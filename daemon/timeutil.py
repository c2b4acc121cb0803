"""Timestamps: stored as fixed-width UTC ISO-8601 text so that text order is time order."""

from __future__ import annotations

from datetime import datetime, timezone

from daemon.errors import InvalidInput, shown


def format_time(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ`, always four digits of year (strftime's %Y drops them before 1000)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def now_iso() -> str:
    return format_time(datetime.now(timezone.utc))


def parse_time(value: str, field: str) -> str:
    """Normalise a caller's ISO-8601 date or date-time; a time without an offset is taken as UTC."""
    return format_time(parse_moment(value, field))


def parse_moment(value: str, field: str) -> datetime:
    """A caller's ISO-8601 date or date-time with its own offset kept (none: UTC), for reasoning in the
    caller's days; InvalidInput naming `field` if it is not one or is out of range."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{field}: {shown(value)} is not an ISO-8601 date or date-time (e.g. 2026-05-01 or 2026-05-01T14:30:00Z)"
        ) from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
    try:
        moment.astimezone(timezone.utc)
    except OverflowError:  # the offset moves it out of datetime's range, e.g. 9999-12-31T23:00-05:00
        raise InvalidInput(
            f"{field}: {shown(value)} is out of range: in UTC it is before year 1 or after 9999"
        ) from None
    return moment


def stored_moment(value: str) -> datetime:
    """A timestamp as stored (format_time) back as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
