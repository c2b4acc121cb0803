"""Time expressions in a query ("last Tuesday", "in May", "two weeks ago") resolved against a reference time.

The result is a window [start, end) with some slack, used by search as a soft signal (memories that
occurred inside it rank higher), never as a filter: people misremember dates and say "last week" of ten
days ago. English only; an expression we do not know simply yields no window.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

import msgspec

from daemon.timeutil import format_time

_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "couple": 2, "few": 3, "several": 4,
}  # fmt: skip
_UNIT_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_MONTHS = [
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december",
]  # fmt: skip
_MONTH = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_COUNT = r"(\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|(?:a )?couple(?: of)?|(?:a )?few|several)"


class TimeWindow(msgspec.Struct, frozen=True):
    start: str  # ISO-8601 UTC, inclusive
    end: str  # exclusive
    expression: str  # the words it came from


def _month_number(word: str) -> int:
    return next(i for i, name in enumerate(_MONTHS, start=1) if name.startswith(word[:3]))


def _count(word: str) -> int:
    word = word.replace("of", "").strip().split()[-1]
    return int(word) if word.isdigit() else _NUMBERS[word]


def _day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _month_span(year: int, month: int, zone: tzinfo) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=zone)
    return start, end


def resolve(text: str, reference: datetime) -> TimeWindow | None:
    """The first time expression in `text`, as a window around what it names, or None (also when what it
    names falls outside the years 1-9999: "999999999 years ago", "in December 9999")."""
    try:
        return _resolve(text, reference)
    except (OverflowError, ValueError):
        return None


def _resolve(text: str, reference: datetime) -> TimeWindow | None:
    lowered = text.lower()
    # Days are the asker's days: "yesterday" at 21:00 in UTC-5 is not UTC's yesterday.
    reference = reference if reference.tzinfo is not None else reference.replace(tzinfo=timezone.utc)
    zone = reference.tzinfo
    assert zone is not None
    today = _day(reference)
    span: tuple[datetime, datetime] | None = None
    found = ""
    patterns: list[tuple[str, object]] = [
        (rf"\b{_COUNT} (day|week|month|year)s? ago\b", "ago"),
        (r"\b(?:last|past|previous) (\d+|two|three|four|five|six|seven|eight|nine|ten|few|couple of) (day|week|month)s?\b", "past"),
        (r"\byesterday\b|\blast night\b", "yesterday"),
        (r"\btoday\b|\bthis morning\b|\btonight\b", "today"),
        (r"\b(?:last|past|this past) weekend\b", "weekend"),
        (r"\b(last|this|next) (week|month|year)\b", "relative"),
        (rf"\b(?:last|on|this past) ({'|'.join(_WEEKDAYS)})\b", "weekday"),
        (rf"\b{_MONTH} (\d{{1,2}})(?:st|nd|rd|th)?(?:,? (\d{{4}}))?\b", "month_day"),
        (rf"\b(\d{{1,2}})(?:st|nd|rd|th)? (?:of )?{_MONTH}(?: (\d{{4}}))?\b", "day_month"),
        (r"\b(\d{4})[-/](\d{1,2})[-/](\d{1,2})\b", "iso"),
        (rf"\bsince {_MONTH}(?: (\d{{4}}))?\b", "since"),
        (rf"\b(?:in|during|early|late|mid|of|last) {_MONTH}(?: (\d{{4}}))?\b", "month"),
    ]  # fmt: skip
    # The first expression in the text wins; at the same place, the more specific pattern (listed first).
    matches = sorted(
        (match.start(), order, kind, match)
        for order, (pattern, kind) in enumerate(patterns)
        if (match := re.search(pattern, lowered)) is not None
    )
    for _, _, kind, match in matches:
        found = match.group(0)
        groups = match.groups()
        if kind == "ago":
            days = _count(groups[0]) * _UNIT_DAYS[groups[1]]
            slack = max(1, days // 4)
            span = (today - timedelta(days=days + slack), today - timedelta(days=days - slack - 1))
        elif kind == "past":
            days = _count(groups[0]) * _UNIT_DAYS[groups[1]]
            span = (today - timedelta(days=days), today + timedelta(days=1))
        elif kind == "yesterday":
            span = (today - timedelta(days=1), today)
        elif kind == "today":
            span = (today, today + timedelta(days=1))
        elif kind == "weekend":
            saturday = today - timedelta(days=(today.weekday() - 5) % 7 or 7)
            span = (saturday, saturday + timedelta(days=2))
        elif kind == "relative":
            which, unit = groups
            shift = {"last": -1, "this": 0, "next": 1}[which]
            if unit == "week":
                monday = today - timedelta(days=today.weekday()) + timedelta(weeks=shift)
                span = (monday, monday + timedelta(days=7))
            elif unit == "month":
                month_index = today.year * 12 + today.month - 1 + shift
                span = _month_span(month_index // 12, month_index % 12 + 1, zone)
            else:
                year = today.year + shift
                span = (datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone))
        elif kind == "weekday":
            back = (today.weekday() - _WEEKDAYS.index(groups[0])) % 7 or 7
            day = today - timedelta(days=back)
            span = (day, day + timedelta(days=1))
        elif kind in ("month_day", "day_month"):
            month_word, day_text, year_text = (
                (groups[0], groups[1], groups[2])
                if kind == "month_day"
                else (groups[1], groups[0], groups[2])
            )
            span = _dated(today, _month_number(month_word), int(day_text), year_text)
        elif kind == "iso":
            span = _dated(today, int(groups[1]), int(groups[2]), groups[0])
        else:  # a month, perhaps with a year: the latest such month not after the reference
            month = _month_number(groups[0])
            year = int(groups[1]) if groups[1] else today.year - (month > today.month)
            span = _month_span(year, month, zone)
            if kind == "since":  # from then until now
                span = (span[0], today + timedelta(days=1))
        if span is not None:
            break
    if span is None:
        return None
    start, end = span
    return TimeWindow(start=_iso(start), end=_iso(end), expression=found)


def _dated(today: datetime, month: int, day: int, year_text: str | None) -> tuple[datetime, datetime] | None:
    """That day; without a year, its latest occurrence not after today (February 29 may be years back)."""
    years = [int(year_text)] if year_text else range(today.year, today.year - 8, -1)
    for year in years:
        try:
            moment = datetime(year, month, day, tzinfo=today.tzinfo)
        except ValueError:
            continue  # "February 30", or February 29 of a common year
        if year_text or moment <= today:
            return moment, moment + timedelta(days=1)
    return None


def _iso(moment: datetime) -> str:
    # The stored timestamps' own fixed-width format, so that comparing the text compares the times.
    return format_time(moment)
