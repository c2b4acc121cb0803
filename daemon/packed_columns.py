"""A long read of a few columns in a few rows: SQLite aggregates the rows into one value a column.

Python's sqlite3 hands the GIL back and forth around each row it steps to, and builds a tuple a row. A search
read ~790 rows (the re-scored vectors, the candidates' places, the filter's pass list); under 16 agents each
of those hand-offs woke a thread that waits for the GIL, only for it to wait again (~20,000 futex calls in
5 s on each reader's thread, bench/README.md). Packed, a read takes a step or a few (~17 a search): the
values of each column as one JSON array, and fixed-width blobs (stored vectors) joined into one blob, in the
same row order.

Kinds of column:
- "value": integers, text and NULL, which JSON keeps exactly. A float would come back with 15 significant
  digits, not always the same double, and a blob cannot be JSON: a read that meets either is made again row
  by row (`exact` is False);
- "key": a column of few distinct values, floats included (a memory's importance): the rows are grouped by
  the keys (by storage class and bytes), one packed row a group, and each key read as it is stored;
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

from daemon.rows import Row

__all__ = ["Kind", "Packed", "exact", "from_columns", "from_rows", "packed_sql", "quote_identifier"]

Kind = Literal["value", "key", "blob"]

_COUNT = "__rows"
_UNPACKABLE = "__unpackable"  # rows with a float in a value column or a non-blob in a blob column


@dataclass(frozen=True)
class Packed:
    """Every row of a read, column-wise: `values[name]` a list for a value or key column, `blobs[name]` the
    blobs of a blob column joined in the same order (each `len(blob) // count` bytes)."""

    count: int
    values: dict[str, list[Any]]
    blobs: dict[str, bytes]


def quote_identifier(name: str) -> str:
    """Quote an SQL identifier; values are always bound, never formatted into SQL."""
    return '"' + name.replace('"', '""') + '"'


def packed_sql(sql: str, kinds: Mapping[str, Kind]) -> str:
    """`sql` (whose result has the columns named in `kinds`) wrapped to give one row (a row a group of its key
    columns' values, if it has any; none for no rows then). A name the query does not give is an error (the
    columns are read as `packed."name"`, never as a string literal)."""
    parts, unpackable, keys = [f"count(*) AS {_COUNT}"], [], []
    for name, kind in kinds.items():
        if name in (_COUNT, _UNPACKABLE) or name.endswith((" narrowest", " widest")):
            raise ValueError(f"a packed read cannot have a column named {name!r}; alias it (AS ...)")
        column = f"packed.{quote_identifier(name)}"
        if kind == "key":
            # One storage class and binary comparison a group: 1 and 1.0, or 'A' and 'a' under NOCASE, are two.
            keys += [f"typeof({column})", f"{column} COLLATE BINARY"]
            parts.append(f"{column} AS {quote_identifier(name)}")
        elif kind == "value":
            # `|| ''` makes a text plain text: a JSON text (json_extract's) would go into the array as JSON
            # where SQLite before 3.45 passes its JSON subtype through the subquery. A blob cannot be JSON.
            plain = f"CASE typeof({column}) WHEN 'text' THEN {column} || '' WHEN 'blob' THEN NULL ELSE {column} END"
            parts.append(f"json_group_array({plain}) AS {quote_identifier(name)}")
            unpackable.append(f"typeof({column}) IN ('real', 'blob')")
        else:
            parts.append(f"CAST(group_concat({column}, '') AS BLOB) AS {quote_identifier(name)}")
            parts.append(f"min(length({column})) AS {quote_identifier(name + ' narrowest')}")
            parts.append(f"max(length({column})) AS {quote_identifier(name + ' widest')}")
            unpackable.append(f"typeof({column}) <> 'blob'")
    parts.append(f"coalesce(sum({' OR '.join(unpackable) or '0'}), 0) AS {_UNPACKABLE}")
    grouped = f" GROUP BY {', '.join(keys)}" if keys else ""
    return f"SELECT {', '.join(parts)} FROM ({sql}) AS packed{grouped}"


def exact(rows: Sequence[Row]) -> bool:
    """Whether the packed read gave every value back as it is stored: no float or blob in a value column (JSON
    keeps 15 digits of a float, and no blob), nothing but blobs in a blob column (a NULL would be left out of
    the join)."""
    return not any(row[_UNPACKABLE] for row in rows)


def from_rows(rows: Sequence[Row], kinds: Mapping[str, Kind]) -> Packed:
    """The packed read's rows, unpacked into one column-wise read."""
    count = 0
    values: dict[str, list[Any]] = {name: [] for name, kind in kinds.items() if kind != "blob"}
    blobs: dict[str, list[bytes]] = {name: [] for name, kind in kinds.items() if kind == "blob"}
    widths: dict[str, set[int]] = {name: set() for name in blobs}
    for row in rows:
        rows_in_it = int(row[_COUNT])
        if not rows_in_it:
            continue
        count += rows_in_it
        for name, kind in kinds.items():
            if kind == "key":
                values[name] += [row[name]] * rows_in_it
            elif kind == "value":
                values[name] += msgspec.json.decode(row[name])
            else:
                widths[name] |= {row[name + " narrowest"], row[name + " widest"]}
                blobs[name].append(row[name])
    for name, seen in widths.items():
        if len(seen) > 1:
            raise ValueError(f"column {name!r} holds blobs of different widths")
    return Packed(count, values, {name: b"".join(parts) for name, parts in blobs.items()})


def from_columns(columns: Mapping[str, Sequence[Any]], kinds: Mapping[str, Kind]) -> Packed:
    """The same, from a read made row by row (a store that has no reason to pack)."""
    missing = [name for name in kinds if name not in columns]
    if missing:
        raise ValueError(f"the query gives no column named {', '.join(map(repr, missing))}")
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
