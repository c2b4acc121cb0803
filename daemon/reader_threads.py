"""A search's reads run whole on its SQLite reader's own thread, handed over once (issue 17).

A search used to make ~12 trips between the event loop and other threads: each statement on its reader's
thread, the BM25 ranking and the KNN on anyio's workers. Under 16 agents each trip waited ~0.5 ms for the loop
or the GIL, while the search held its reader (bench/README.md, "Seventh look"). So on the SQLite
file `Store.long_read` runs a search's reading coroutine on its reader's thread, on an event loop of that
thread's own: its statements run in place on the connection (no trip), its blocking steps (`blocking`) run in
place too, and the daemon's loop hands the work over once and takes the result once.

The coroutine is the same code the daemon's loop runs on PostgreSQL: nothing in it waits on the daemon's loop
(the query's vectors are made before the hand-over; the phrasings of a speaker's retry are embedded in place,
a model call of a few short texts). What it reads of the daemon's state is made to be read from threads (the
vector cache's snapshots, the BM25 index's version check, policy rules replaced whole; a float32 cache's exact
similarities are read from the store instead); what it hands to the daemon's loop (an audit record of a
refusal) goes by `call_soon_threadsafe`, without waiting. The store's `read`, `write` and `long_read` refuse
to be called here.

The caller waits for the work (shielded: a reader's thread cannot be interrupted mid-search, so a cancelled
search gives up its slot when its reading ends, not before), so the work is owned as any awaited call is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

__all__ = ["blocking", "close_here", "on_reader_thread", "run_here"]

T = TypeVar("T")

_here = threading.local()  # `.loop`: this reader thread's event loop, once it has run a search's reads


def on_reader_thread() -> bool:
    """Whether this code runs on a reader's thread, inside `run_here` (not on the daemon's event loop)."""
    return getattr(_here, "running", False)


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, which blocks (numpy, onnxruntime): on a worker thread from the daemon's loop, in place on
    a reader's thread (already off the daemon's loop, and another trip would cost what this module saves)."""
    if on_reader_thread():
        return fn(*args)
    return await anyio.to_thread.run_sync(fn, *args)


def run_here(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work()` to its end on this thread's own event loop (made on the thread's first call), as a task
    of its own: each with a fresh copy of the thread's context, so nothing one sets is seen by the next."""
    loop = getattr(_here, "loop", None)
    if loop is None:
        loop = _here.loop = asyncio.new_event_loop()
    _here.running = True
    try:
        return loop.run_until_complete(work())
    finally:
        _here.running = False


def close_here() -> None:
    """Close this thread's event loop, if it made one (before its connection closes)."""
    loop = getattr(_here, "loop", None)
    if loop is not None:
        _here.loop = None
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
