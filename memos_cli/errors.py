"""How the commands end on our errors: one line on stderr and an exit code, also when the error comes out of
a task group wrapped in exception groups."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


class CommandFailed(SystemExit):
    """Raised by `one_line_errors` after it printed the message."""


@contextmanager
def one_line_errors(program: str, code: int = 1) -> Iterator[None]:
    """Turn our errors (also inside exception groups) into `program: message` and exit `code`;
    anything else is a bug and keeps its traceback."""
    try:
        yield
    except (MemosError, BaseExceptionGroup) as exc:
        error = first_memos_error(exc)
        if error is None:
            raise
        print(f"{program}: {error}", file=sys.stderr)
        raise CommandFailed(code) from None


def exit_code(run: Callable[[], int]) -> int:
    try:
        return run()
    except CommandFailed as failed:
        return int(failed.code or 1)
