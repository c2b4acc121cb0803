"""Handing freed memory back to the operating system.

glibc keeps memory freed by worker threads in per-thread heaps (arenas) for reuse, so a large transient
allocation on a thread (a batch of long texts in onnxruntime, 100k vector rows read at start) leaves the
daemon's RSS that large for good. `malloc_trim` returns what is free in every arena.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["release_freed_memory"]

_malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", None) if sys.platform == "linux" else None


def release_freed_memory() -> None:
    """Return the heap's free memory to the system (glibc only; elsewhere nothing to do)."""
    if _malloc_trim is not None:
        _malloc_trim(0)
