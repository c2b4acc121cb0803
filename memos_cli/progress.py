"""A progress line for long work on a terminal; nothing at all when stderr is not one (scripts, journald)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int | None = None) -> None:
        self._label = label
        self._total = total
        self._done = 0
        self._shown = 0.0
        self._active = sys.stderr.isatty()

    def advance(self, count: int = 1) -> None:
        self._done += count
        now = time.monotonic()
        if self._active and now - self._shown > 0.1:
            self._shown = now
            of = f"/{self._total}" if self._total else ""
            print(f"\r{self._label}: {self._done}{of}", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self._active:
            print(f"\r{self._label}: {self._done} done".ljust(40), file=sys.stderr, flush=True)
