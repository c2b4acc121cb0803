"""A long read of a few columns as one row: SQLite aggregates every row into one value a column.

Python's sqlite3 hands the GIL back and forth around each row it steps to, and builds a tuple a row. A search
reads ~800 rows (the re-scored vectors, the candidates' places, the filter's pass list); under 16 agents
each of those hand-offs wakes a thread that waits for the GIL, only for it to wait again (~160 futex calls
a search on each reader's thread, 2026-12-02). Packed, a read is one step: the values of each column as one
JSON array, and fixed-width blobs (stored vectors) joined into one blob, in the same row order.

Kinds of column:
- "value": integers, text and NULL, which JSON keeps exactly. A float would come back with 15 significant
  digits, not always the same double: a read that meets one is made again row by row (`exact` is False);
- "blob": blobs of one width, joined (a blob cannot be a JSON value); a NULL or text there is read row by
  row too, and refused.

Row order is the order SQLite fed the rows to the aggregates: the same for every column of the read, but
not the statement's ORDER BY; only reads whose rows are matched by a column of their own (a seq) use this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

__all__ = ["Kind", "Packed", "exact", "from_columns", "from_row", "packed_sql"]

Kind = Literal["value", "blob"]

_COUNT = "__rows"
_UNPACKABLE = "__unpackable"  # rows with a float in a value column or a non-blob in a blob column


@dataclass(frozen=True)
class Packed:
    """Every row of a read, column-wise: `values[name]` a list for a value column, `blobs[name]` the
    blobs of a blob column joined in the same order (each `len(blob) // count` bytes)."""

    count: int
    values: dict[str, list[Any]]
    blobs: dict[str, bytes]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def packed_sql(sql: str, kinds: Mapping[str, Kind]) -> str:
    """`sql` (whose result has the columns named in `kinds`) wrapped to give one row."""
    parts, unpackable = [f"count(*) AS {_COUNT}"], []
    for name, kind in kinds.items():
        column = _quoted(name)
        if kind == "value":
            parts.append(f"json_group_array({column}) AS {column}")
            unpackable.append(f"typeof({column}) = 'real'")
        else:
            parts.append(f"CAST(group_concat({column}, '') AS BLOB) AS {column}")
            parts.append(f"min(length({column})) AS {_quoted(name + ' narrowest')}")
            parts.append(f"max(length({column})) AS {_quoted(name + ' widest')}")
            unpackable.append(f"typeof({column}) <> 'blob'")
    parts.append(f"coalesce(sum({' OR '.join(unpackable) or '0'}), 0) AS {_UNPACKABLE}")
    return f"SELECT {', '.join(parts)} FROM ({sql})"


def exact(row: Mapping[str, Any]) -> bool:
    """Whether the packed read gave every value back as it is stored: no float in a value column (JSON keeps
    15 digits), nothing but blobs in a blob column (a NULL would be left out of the join)."""
    return not row[_UNPACKABLE]


def from_row(row: Mapping[str, Any], kinds: Mapping[str, Kind]) -> Packed:
    """The packed read's one row, unpacked."""
    count = int(row[_COUNT])
    values: dict[str, list[Any]] = {}
    blobs: dict[str, bytes] = {}
    for name, kind in kinds.items():
        if kind == "blob":
            joined = row[name] or b""
            if count and row[name + " narrowest"] != row[name + " widest"]:
                raise ValueError(f"column {name!r} holds blobs of different widths")
            blobs[name] = bytes(joined)
            continue
        values[name] = msgspec.json.decode(row[name]) if count else []
    return Packed(count, values, blobs)


def from_columns(columns: Mapping[str, Sequence[Any]], kinds: Mapping[str, Kind]) -> Packed:
    """The same, from a read made row by row (a store that has no reason to pack)."""
    counts = {len(values) for values in columns.values()}
    count = counts.pop() if counts else 0
    values = {name: list(columns[name]) for name, kind in kinds.items() if kind != "blob"}
    blobs = {}
    for name, kind in kinds.items():
        if kind == "blob":
            if not all(isinstance(blob, bytes | bytearray | memoryview) for blob in columns[name]):
                raise ValueError(f"column {name!r} holds values that are not blobs")
            widths = {len(blob) for blob in columns[name]}
            if len(widths) > 1:
                raise ValueError(f"column {name!r} holds blobs of different widths")
            blobs[name] = b"".join(bytes(blob) for blob in columns[name])
    return Packed(count, values, blobs)
