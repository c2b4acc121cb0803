"""One rule for the daemon's background work (docs/ARCHITECTURE.md, "Background work").

A retryable error (`MemosError.retryable`: the database locked by another process, a full disk, a full
queue, the model not ready) is logged once, with what was being done, and the work is retried with
exponential back-off (1 s doubling to at most 60 s) until it succeeds; its success after failures is logged
too. Any other error is a fault the daemon cannot work around: the loop's task logs it as CRITICAL with its
traceback and lets it end the daemon's task group, so memosd stops with a non-zero exit and the service
manager can restart it.

Every background loop is started through `supervised` and runs each unit of work through `retrying`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus

from daemon.errors import MemosError

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0


async def retrying(what: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` until it succeeds, backing off after retryable errors; any other error propagates."""
    delay, failures = BACKOFF_FIRST_S, 0
    while True:
        try:
            result = await work()
        except MemosError as exc:
            if not exc.retryable:
                raise
            failures += 1
            if failures == 1:
                log.warning("%s failed, retrying with back-off until it succeeds: %s", what, exc)
            await anyio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
            continue
        if failures:
            log.warning("%s succeeded after %d failed attempts", what, failures)
        return result


async def supervised(
    name: str, run: Callable[..., Awaitable[Any]], *, task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Run a background loop (`run(task_status=...)`); an error escaping it stops the daemon, loudly."""
    try:
        await run(task_status=task_status)
    except Exception:
        log.critical("background task %s failed; memosd is stopping", name, exc_info=True)
        raise
