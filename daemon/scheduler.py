"""The priority scheduler: a bounded queue of jobs run by a fixed set of workers in the daemon's task group.

Classes, highest first: interactive (a client is waiting), preload (getting a context ready before it is
asked for), background (embedding backfill, retention, re-indexing). A queued job's priority improves as it
waits (aging: one class per `aging_s` seconds), so background work is never starved. Jobs with the same key
coalesce (two preloads of one pack become one, at the more urgent class); `supersede=True` cancels the older
job instead, queued or running. A full queue refuses with `Overloaded`. On shutdown every job either
finishes or is recorded as cancelled, and whoever waits on it is told.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from enum import IntEnum
from typing import Any, Literal

import anyio
import msgspec
from anyio.abc import TaskStatus

from daemon.errors import MemosError, Overloaded, Unavailable

log = logging.getLogger(__name__)

State = Literal["queued", "running", "done", "failed", "cancelled"]


def _shown_key(key: Hashable) -> str:
    """A job's key for the log: its parts joined ("pack/task_1/bob"), ids only, never content."""
    return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)


class JobClass(IntEnum):
    INTERACTIVE = 0
    PRELOAD = 1
    BACKGROUND = 2


class JobCancelled(Unavailable):
    """The job was cancelled: a newer one superseded it, or the daemon is shutting down."""


class Job:
    def __init__(
        self, key: Hashable, job_class: JobClass, fn: Callable[[], Awaitable[Any]], now: float
    ) -> None:
        self.key = key
        self.job_class = job_class
        self.fn = fn
        self.submitted_at = now
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.state: State = "queued"
        self.reason = ""
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = anyio.Event()
        self.scope: anyio.CancelScope | None = None

    async def wait(self) -> Any:
        """The job's result; its error if it failed; JobCancelled if it was cancelled."""
        await self.done.wait()
        if self.state == "cancelled":
            raise JobCancelled(f"the job was cancelled: {self.reason}")
        if self.error is not None:
            raise self.error
        return self.result


class ClassMetrics(msgspec.Struct, kw_only=True):
    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    coalesced: int = 0
    wait_ms_total: float = 0.0
    run_ms_total: float = 0.0

    @property
    def finished(self) -> int:
        return self.done + self.failed


class Scheduler:
    def __init__(
        self,
        *,
        workers: int = 2,
        capacity: int = 1000,
        aging_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workers = workers
        self._capacity = capacity
        self._aging_s = aging_s
        self._clock = clock
        self._queued: dict[Hashable, Job] = {}  # insertion order is submission order
        self._running: dict[Hashable, Job] = {}
        self._wake = anyio.Event()
        self._accepting = False
        self.metrics = {cls: ClassMetrics() for cls in JobClass}

    def submit(
        self, key: Hashable, job_class: JobClass, fn: Callable[[], Awaitable[Any]], *, supersede: bool = False
    ) -> Job:
        """Queue a job (or join the queued one with the same key); Overloaded when the queue is full."""
        if not self._accepting:
            raise Unavailable("the scheduler is not running (memosd is starting or shutting down)")
        queued = self._queued.get(key)
        if queued is not None and not supersede:
            if job_class < queued.job_class:  # the more urgent caller decides the class
                self.metrics[queued.job_class].queued -= 1
                queued.job_class = job_class
                self.metrics[job_class].queued += 1
            self.metrics[job_class].coalesced += 1
            return queued
        if queued is not None:
            self._cancel_queued(queued, "superseded by a newer job")
        running = self._running.get(key)
        if running is not None and supersede and running.scope is not None:
            running.reason = "superseded by a newer job"
            running.scope.cancel()
        if len(self._queued) >= self._capacity:
            raise Overloaded(f"the scheduler queue is full ({self._capacity} jobs); try again in a moment")
        job = Job(key, job_class, fn, self._clock())
        self._queued[key] = job
        self.metrics[job_class].queued += 1
        self._wake.set()
        return job

    def _cancel_queued(self, job: Job, reason: str) -> None:
        del self._queued[job.key]
        self.metrics[job.job_class].queued -= 1
        self.metrics[job.job_class].cancelled += 1
        job.state, job.reason, job.finished_at = "cancelled", reason, self._clock()
        job.done.set()

    def _effective(self, job: Job, now: float) -> float:
        return job.job_class - (now - job.submitted_at) / self._aging_s

    def _next(self) -> Job | None:
        """The queued job with the best aged priority; the oldest among equals."""
        if not self._queued:
            return None
        now = self._clock()
        best = min(self._queued.values(), key=lambda job: (self._effective(job, now), job.submitted_at))
        del self._queued[best.key]
        return best

    async def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            await self._run(job)

    async def _run(self, job: Job) -> None:
        stats = self.metrics[job.job_class]
        stats.queued -= 1
        stats.running += 1
        job.state, job.started_at = "running", self._clock()
        stats.wait_ms_total += (job.started_at - job.submitted_at) * 1000
        self._running[job.key] = job
        try:
            with anyio.CancelScope() as job.scope:
                job.result = await job.fn()
                job.state = "done"
            if job.state == "running":  # its scope was cancelled: superseded
                job.state = "cancelled"
        except anyio.get_cancelled_exc_class():
            job.state, job.reason = "cancelled", job.reason or "memosd is shutting down"
            raise
        # A job's failure is logged here and handed to whoever waits for it; the worker goes on.
        except Exception as exc:
            job.state, job.error = "failed", exc
            if isinstance(exc, MemosError):
                log.warning("%s job %s failed: %s", job.job_class.name.lower(), _shown_key(job.key), exc)
            else:  # a bug: keep its traceback
                log.error("%s job %s failed", job.job_class.name.lower(), _shown_key(job.key), exc_info=True)
        finally:
            job.finished_at = self._clock()
            stats.running -= 1
            stats.run_ms_total += (job.finished_at - (job.started_at or job.finished_at)) * 1000
            outcome = job.state if job.state in ("done", "failed", "cancelled") else "cancelled"
            setattr(stats, outcome, getattr(stats, outcome) + 1)
            if self._running.get(job.key) is job:
                del self._running[job.key]
            job.done.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve jobs until cancelled; then record every queued job as cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self._workers):
                    tg.start_soon(self._work)
                self._accepting = True
                task_status.started()
        finally:
            self._accepting = False
            for job in list(self._queued.values()):
                self._cancel_queued(job, "memosd is shutting down")

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Per class: queued, running, finished counts and mean wait and run times (for `memos status`)."""
        out = {}
        for cls, m in self.metrics.items():
            finished = max(m.finished + m.cancelled, 1)
            out[cls.name.lower()] = {
                "queued": m.queued, "running": m.running, "done": m.done, "failed": m.failed,
                "cancelled": m.cancelled, "coalesced": m.coalesced,
                "mean_wait_ms": round(m.wait_ms_total / finished, 2),
                "mean_run_ms": round(m.run_ms_total / finished, 2),
            }  # fmt: skip
        return out
