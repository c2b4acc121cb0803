"""Handing freed memory back to the operating system.

glibc keeps memory freed by worker threads in per-thread heaps (arenas) for reuse, so a large transient
allocation on a thread (a batch of long texts in onnxruntime, 100k vector rows read at start) leaves the
daemon's RSS that large for good. `malloc_trim` returns what is free in every arena.

And glibc serves a block of at least its mmap threshold by a mapping of its own, returned when freed, but
raises that threshold (from 128 KiB up to 32 MiB) each time such a block is freed: after the first large
temporary (a model call's tensors, 1.5 to 6 MiB each for 256-token texts; a search's score arrays, 800 KiB
at 100k memories; a 12 MiB block read at start) every later one is carved from the heaps, where it
fragments them and stays when freed. `map_large_blocks` holds the threshold at glibc's own starting value
(measured 2026-12-02, issue 17: embedding 200 long LongMemEval turns peaked 120 MiB above the loaded model
instead of 180-230, at about 10% more CPU for long texts; ~20 MiB less RSS at ready and ~35 less after
searches and adds at 100k memories; bench/README.md).
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["LARGE_BLOCK", "map_large_blocks", "release_freed_memory"]

_libc = ctypes.CDLL(None) if sys.platform == "linux" else None
_malloc_trim = getattr(_libc, "malloc_trim", None)
_mallopt = getattr(_libc, "mallopt", None)
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
LARGE_BLOCK = 128 * 1024  # bytes: blocks this large get a mapping of their own, returned when freed


def release_freed_memory() -> None:
    """Return the heap's free memory to the system (glibc only; elsewhere nothing to do)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def map_large_blocks(threshold: int = LARGE_BLOCK) -> None:
    """Serve every allocation of `threshold` bytes or more by a mapping of its own, for the whole process,
    from now on (glibc only). Setting it also stops glibc from raising the threshold by itself."""
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, threshold)
