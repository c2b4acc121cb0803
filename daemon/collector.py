"""Short pauses of the cyclic garbage collector in a daemon that lives for weeks.

CPython's full collection walks every object it tracks. Once its caches are filled at 100k memories, memosd
holds ~77k long-lived ones (the indexes' dicts and lists, the model's session, the SDK's tools and schemas),
and one full pass over them took 47-60 ms (2026-12-02, AMD EPYC, bench/README.md): a pause that every
agent's call in flight waits out, whenever the collector decides on one. Those objects live as long as the
daemon, so once the caches are filled they are set aside (`gc.freeze`, after one full pass, so that no
garbage is kept): later full passes walk only what came after them (0.0 ms over the same heap). Objects set
aside are still freed when nothing refers to them; only a cycle among them would stay (none is expected of
caches that live until exit).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable, Callable, Sequence

import anyio
from anyio.abc import TaskStatus

__all__ = ["set_aside_when_filled"]

log = logging.getLogger(__name__)


async def set_aside_when_filled(
    filled: Sequence[Callable[[], Awaitable[object]]],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Once every one of `filled` has returned (the caches are full), collect once and set every object
    alive out of the collector's later passes."""
    task_status.started()
    for wait in filled:
        await wait()
    gc.collect()
    gc.freeze()
    log.info("%d long-lived objects set aside from the garbage collector's passes", gc.get_freeze_count())
