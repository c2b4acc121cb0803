"""Handing freed memory back to the operating system.

glibc keeps memory freed by worker threads in per-thread heaps (arenas) for reuse, so a large transient
allocation on a thread (a batch of long texts in onnxruntime, 100k vector rows read at start) leaves the
daemon's RSS that large for good. `malloc_trim` returns what is free in every arena.

And glibc serves a block of at least its mmap threshold by a mapping of its own, returned when freed, but
raises that threshold (from 128 KiB up to 32 MiB) each time such a block is freed: after the first large
temporary (a model call's tensors, 1.5 to 6 MiB each for 256-token texts; a 12 MiB block read at start) every
later one is carved from the heaps, where it fragments them and stays when freed. `tune_heaps` holds the
threshold at 1 MiB (embedding 200 long LongMemEval turns peaked 120 MiB above the loaded model instead of
180-230, 2026-12-02, bench/README.md) and lets each heap keep 4 MiB free at its top instead of glibc's 128 KiB:
below those a search's temporaries (score and product arrays of 400-800 KiB at 100k memories) were mapped, or
handed back at the top of a thread's heap, and page-faulted in again by every search (~500 faults a search at
100k, 2026-12-02, issue 17). Blocks under 1 MiB now stay in the heaps, so the heaps are as many as the cores,
not glibc's eight per core: each of memosd's ~20 threads (anyio's workers, SQLite's, onnxruntime's) would
otherwise keep its own heap, and its own free blocks (+17 MiB RSS at 100k; with two heaps, ~5 MiB less than
before instead).
"""

from __future__ import annotations

import ctypes
import sys

from daemon.cores import usable_cores

__all__ = ["KEPT_FREE", "LARGE_BLOCK", "release_freed_memory", "tune_heaps"]

_libc = ctypes.CDLL(None) if sys.platform == "linux" else None
_malloc_trim = getattr(_libc, "malloc_trim", None)
_mallopt = getattr(_libc, "mallopt", None)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's malloc.h
LARGE_BLOCK = 1024 * 1024  # bytes: blocks this large get a mapping of their own, returned when freed
KEPT_FREE = 4 * 1024 * 1024  # bytes free at a heap's top that it keeps for reuse rather than hand back


def release_freed_memory() -> None:
    """Return the heap's free memory to the system (glibc only; elsewhere nothing to do)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def tune_heaps(threshold: int = LARGE_BLOCK, kept_free: int = KEPT_FREE) -> None:
    """Serve every allocation of `threshold` bytes or more by a mapping of its own, let each heap keep up to
    `kept_free` bytes free for reuse, and share as many heaps as the process may use cores among its threads,
    for the whole process, from now on (glibc only). Setting the first two also stops glibc from moving them
    by itself; `release_freed_memory` still hands back everything free."""
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, threshold)
        _mallopt(_M_TRIM_THRESHOLD, kept_free)
        _mallopt(_M_ARENA_MAX, max(2, usable_cores()))
