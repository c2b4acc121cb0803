"""How many cores this process may use: what the daemon sizes its parallel work by."""

from __future__ import annotations

import functools
import os


@functools.cache
def usable_cores() -> int:
    """The cores this process is allowed to run on (its CPU affinity where the OS has one, as on Linux;
    else every core the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
