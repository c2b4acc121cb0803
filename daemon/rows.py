"""Result rows read by column name.

The store hands out `Row`s: `row["content"]`, never `row[3]`. A positional read (an integer index, a slice,
unpacking, iterating) raises `TypeError`, so a column added to a SELECT can never silently shift the meaning
of another, and any leftover positional read fails loudly in the tests instead of reading the wrong field.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, KeysView, Sequence
from typing import Any, NoReturn


class Row:
    """One result row: a read-only mapping from column name to value that refuses positional access."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    @classmethod
    def from_columns(cls, names: Sequence[str], values: Sequence[Any]) -> Row:
        """A row from a statement's column names and one of its raw value tuples.

        Two columns with one name would make one of them unreadable, so that is refused: alias one of them.
        """
        _check_names(names)
        return cls(dict(zip(names, values, strict=True)))

    @classmethod
    def many(cls, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Row]:
        """Every row of one statement: `from_columns` for each, its names checked once."""
        if not rows:
            return []
        if len(set(names)) != len(names):
            return [cls.from_columns(names, values) for values in rows]  # raises its error
        return [cls(dict(zip(names, values, strict=True))) for values in rows]

    def __getitem__(self, name: str) -> Any:
        if not isinstance(name, str):
            raise TypeError(
                f"rows are read by column name, not by position ({name!r}); columns: {self._names()}"
            )
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(f"no column {name!r} in this row; columns: {self._names()}") from None

    def __iter__(self) -> Iterator[Any]:
        self._positional("unpacked or iterated")

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def keys(self) -> KeysView[str]:
        """The column names, in the statement's order (so `dict(row)` works)."""
        return self._values.keys()

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Row) and other._values == self._values

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Row({self._values!r})"

    def _names(self) -> str:
        return ", ".join(self._values) or "(none)"

    def _positional(self, how: str) -> NoReturn:
        raise TypeError(f"rows are read by column name and cannot be {how}; columns: {self._names()}")


def by_column(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, tuple[Any, ...]]:
    """Every row of one statement column-wise: each column's values, in row order, under its name. No
    `Row` is built per row, so a long read of a few columns (the stored vectors a search re-scores) costs
    one transpose in C instead of a dict a row."""
    _check_names(names)
    if not rows:
        return {name: () for name in names}
    return dict(zip(names, zip(*rows, strict=True), strict=True))


def _check_names(names: Sequence[str]) -> None:
    """Two columns of one name would make one of them unreadable: alias one of them."""
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if list(names).count(name) > 1})
        raise ValueError(f"the statement returns two columns named {duplicates}; alias them (AS ...)")


def column_names(description: Iterable[Sequence[Any]] | None) -> list[str]:
    """The column names of a DB-API cursor's `description` (empty for a statement that returns no rows)."""
    return [column[0] for column in description or ()]


def read_rows(conn: Any, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    """Every row of `sql` on a plain (synchronous) DB-API connection, by name; for the store's helpers that run
    on short-lived connections outside the pool (migrations, backup, check)."""
    cursor = conn.execute(sql, params)
    try:
        return Row.many(column_names(cursor.description), cursor.fetchall())
    finally:
        cursor.close()


def read_row_pages(conn: Any, sql: str, params: Sequence[Any] = (), *, page: int) -> Iterator[list[Row]]:
    """The rows of `sql` on a plain DB-API connection, by name, `page` at a time from one cursor: a large
    result (every stored vector, read at start) is never all in memory at once."""
    cursor = conn.execute(sql, params)
    try:
        names = column_names(cursor.description)
        while values := cursor.fetchmany(page):
            yield Row.many(names, values)
    finally:
        cursor.close()
