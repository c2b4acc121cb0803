"""Handing freed memory back to the operating system.

glibc keeps memory freed by worker threads in per-thread heaps (arenas) for reuse, so a large transient
allocation on a thread (a batch of long texts in onnxruntime, 100k vector rows read at start) leaves the
daemon's RSS that large for good. `malloc_trim` returns what is free in every arena.

glibc also raises its mmap threshold (from 128 KiB up to 32 MiB) each time a block it mapped is freed, so
after the first large temporary (a search's score arrays, 800 KiB at 100k memories; a 12 MiB block read at
start) every later one is carved from the arenas, where it stays when freed. The daemon fixes the threshold
at 128 KiB (`unpooled_large_allocations`): a large block is mapped and unmapped with its array (issue 17:
~20 MiB less at ready and ~35 less after searches and adds at 100k memories, bench/README.md).
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["release_freed_memory", "unpooled_large_allocations"]

_libc = ctypes.CDLL(None) if sys.platform == "linux" else None
_malloc_trim = getattr(_libc, "malloc_trim", None)
_mallopt = getattr(_libc, "mallopt", None)
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept (setting it stops the dynamic raise)


def release_freed_memory() -> None:
    """Return the heap's free memory to the system (glibc only; elsewhere nothing to do)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def unpooled_large_allocations() -> None:
    """Serve blocks of 128 KiB or more by mmap for good, returned to the system when freed (glibc only)."""
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
