"""Concurrent searches' vector products made together, and a lone one on two cores.

The int8 KNN (daemon/vector_cache.py) reads every row of the cache for each product, and onnxruntime's kernel
(MLAS) takes several queries per row it reads for little more than two (100k rows, one thread, 2026-12-02:
3.4 ms of CPU for one query by its matrix-vector kernel, 6.4 for two, 7.8 for eight together). So at most as
many products run at once as the process may use cores; a search that finds them all running waits for one to end, and the search whose
turn came then makes its product for every search waiting by then (up to `most`), oldest first. Under many
agents the product's CPU per search falls several-fold; a search that finds a core free never waits, and
one alone on an idle machine is told so, to split its product over two threads.

Blocking: `run` is called on searches' threads (their readers', daemon/reader_threads.py; anyio's workers on
PostgreSQL), which wait on a `threading.Event` for their turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from daemon.cores import usable_cores

__all__ = ["Batches", "idle_core"]

Q = TypeVar("Q")
R = TypeVar("R")


class _Wanted(Generic[Q, R]):
    """One search's query; once `turn` is set, its result (or the error that made it), or its turn to lead."""

    def __init__(self, query: Q) -> None:
        self.query = query
        self.result: R | None = None
        self.error: BaseException | None = None
        self.done = False
        self.turn = threading.Event()


class Batches(Generic[Q, R]):
    def __init__(
        self, compute: Callable[[list[Q], bool], list[R]], *, most: int = 8, leaders: int | None = None
    ) -> None:
        """`compute(queries, alone)` makes one product for the queries, results in their order; `alone`: no
        other product runs, none waits, and the machine has an idle core. At most `leaders` products run at
        once (default: the cores this process may use)."""
        self._compute = compute
        self._most = most
        self._leaders = leaders or usable_cores()
        self._lock = threading.Lock()  # guards _waiting and _running
        self._waiting: list[_Wanted[Q, R]] = []
        self._running = 0  # products being made (their makers' threads)
        self.products = 0  # products made
        self.queries = 0  # queries they were made for

    def run(self, query: Q) -> R:
        """`query`'s result, from a product of its own or one made with other searches' queries."""
        wanted: _Wanted[Q, R] = _Wanted(query)
        with self._lock:
            lead = self._running < self._leaders
            if lead:
                self._running += 1
            else:
                self._waiting.append(wanted)
        if not lead:
            wanted.turn.wait()  # another search made our product, or handed us the turn to make one
        if not wanted.done:
            self._make(wanted)
        if wanted.error is not None:
            raise wanted.error
        return wanted.result  # type: ignore[return-value]  # done without an error: set

    def _make(self, own: _Wanted[Q, R]) -> None:
        """Make the product for `own` and the oldest waiting, then hand the turn to the oldest still waiting
        (or give up the place)."""
        with self._lock:
            batch = [own, *self._waiting[: self._most - 1]]
            del self._waiting[: self._most - 1]
            alone = len(batch) == 1 and self._running == 1 and not self._waiting
        try:
            results = self._compute([wanted.query for wanted in batch], alone and idle_core())
            for wanted, result in zip(batch, results, strict=True):
                wanted.result = result
        except BaseException as exc:  # every search of the batch fails with it, not only the one that made it
            for wanted in batch[1:]:
                wanted.error = exc
            raise
        finally:
            with self._lock:
                self.products += 1
                self.queries += len(batch)
                following = self._waiting.pop(0) if self._waiting else None
                if following is None:
                    self._running -= 1
            for wanted in batch:
                wanted.done = True
                if wanted is not own:
                    wanted.turn.set()
            if following is not None:
                following.turn.set()  # not done: its turn to make a product


def idle_core() -> bool:
    """Whether fewer threads are runnable on the machine than this process may use cores (Linux's
    /proc/loadavg counts them now, the caller included); False where that cannot be read. Splitting a
    product then shortens its wait; on busy cores it would only add the hand-off's cost."""
    try:
        with open("/proc/loadavg", "rb") as file:
            runnable = int(file.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return False
    return runnable < usable_cores()
