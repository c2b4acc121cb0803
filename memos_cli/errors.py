"""Finding our error inside the exception groups that task groups raise, for a one-line message."""

from __future__ import annotations

import sys

from daemon import MemosError

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


def first_memos_error(exc: BaseException) -> MemosError | None:
    if isinstance(exc, MemosError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_memos_error(inner)
            if found is not None:
                return found
    return None


# What the commands turn into a one-line message (after checking `first_memos_error` finds one).
FAILURES = (MemosError, BaseExceptionGroup)
