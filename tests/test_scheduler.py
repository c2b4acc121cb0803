"""The priority scheduler: order by class, aging, coalescing, supersession, back-pressure, and shutdown
with jobs in flight (each job finishes or is recorded as cancelled, and its waiter is told)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from daemon import Overloaded, StoreBusy
from daemon.scheduler import JobCancelled, JobClass, Scheduler

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[anyio.abc.TaskGroup]:
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        yield tg
        tg.cancel_scope.cancel()


async def blocked_worker(scheduler: Scheduler) -> anyio.Event:
    """Occupy the (single) worker until the returned event is set."""
    release, started = anyio.Event(), anyio.Event()

    async def hold() -> None:
        started.set()
        await release.wait()

    scheduler.submit("hold", JobClass.INTERACTIVE, hold)
    await started.wait()
    return release


async def test_jobs_run_by_class_most_urgent_first() -> None:
    scheduler, order = Scheduler(workers=1), []
    async with running(scheduler):
        release = await blocked_worker(scheduler)

        def job(name: str):  # type: ignore[no-untyped-def]
            async def run() -> None:
                order.append(name)

            return run

        jobs = [
            scheduler.submit("b", JobClass.BACKGROUND, job("background")),
            scheduler.submit("p", JobClass.PRELOAD, job("preload")),
            scheduler.submit("i", JobClass.INTERACTIVE, job("interactive")),
        ]
        release.set()
        for queued in jobs:
            await queued.wait()
    assert order == ["interactive", "preload", "background"]


async def test_a_background_job_that_waited_long_enough_beats_a_fresh_interactive_one() -> None:
    clock, order = Clock(), []
    scheduler = Scheduler(workers=1, aging_s=10.0, clock=clock)
    async with running(scheduler):
        release = await blocked_worker(scheduler)

        async def note(name: str) -> None:
            order.append(name)

        old = scheduler.submit("old", JobClass.BACKGROUND, lambda: note("old background"))
        clock.now = 25.0  # 2.5 classes of aging: better than interactive's 0
        fresh = scheduler.submit("new", JobClass.INTERACTIVE, lambda: note("fresh interactive"))
        release.set()
        await old.wait()
        await fresh.wait()
    assert order == ["old background", "fresh interactive"]


async def test_duplicate_jobs_coalesce_and_take_the_more_urgent_class() -> None:
    scheduler, runs = Scheduler(workers=1), []
    async with running(scheduler):
        release = await blocked_worker(scheduler)

        async def build() -> str:
            runs.append(1)
            return "pack"

        first = scheduler.submit(("pack", "b", "t1"), JobClass.BACKGROUND, build)
        second = scheduler.submit(("pack", "b", "t1"), JobClass.PRELOAD, build)
        assert second is first and first.job_class == JobClass.PRELOAD
        release.set()
        assert await second.wait() == "pack"
    assert runs == [1]
    assert scheduler.metrics[JobClass.PRELOAD].coalesced == 1


async def test_a_newer_job_supersedes_a_queued_or_running_one() -> None:
    scheduler = Scheduler(workers=1)
    async with running(scheduler):
        started = anyio.Event()

        async def slow() -> str:
            started.set()
            await anyio.sleep(60)
            return "stale"

        async def quick() -> str:
            return "fresh"

        running_job = scheduler.submit("k", JobClass.PRELOAD, slow)
        await started.wait()
        newer = scheduler.submit("k", JobClass.PRELOAD, quick, supersede=True)
        assert await newer.wait() == "fresh"
        with pytest.raises(JobCancelled, match="superseded"):
            await running_job.wait()
        release = await blocked_worker(scheduler)
        queued = scheduler.submit("q", JobClass.BACKGROUND, quick)
        replacement = scheduler.submit("q", JobClass.BACKGROUND, quick, supersede=True)
        release.set()
        with pytest.raises(JobCancelled):
            await queued.wait()
        assert await replacement.wait() == "fresh"


async def test_a_full_queue_refuses_with_back_pressure() -> None:
    scheduler = Scheduler(workers=1, capacity=2)
    async with running(scheduler):
        release = await blocked_worker(scheduler)

        async def nothing() -> None:
            pass

        scheduler.submit("a", JobClass.BACKGROUND, nothing)
        scheduler.submit("b", JobClass.BACKGROUND, nothing)
        with pytest.raises(Overloaded, match="queue is full"):
            scheduler.submit("c", JobClass.INTERACTIVE, nothing)
        scheduler.submit("a", JobClass.INTERACTIVE, nothing)  # coalescing needs no room
        release.set()


async def test_a_failing_job_reports_its_error_to_its_waiter_and_the_worker_goes_on() -> None:
    scheduler = Scheduler(workers=1)
    async with running(scheduler):

        async def broken() -> None:
            raise ValueError("bad pack")

        async def fine() -> str:
            return "ok"

        failed = scheduler.submit("x", JobClass.PRELOAD, broken)
        with pytest.raises(ValueError, match="bad pack"):
            await failed.wait()
        assert await scheduler.submit("y", JobClass.PRELOAD, fine).wait() == "ok"
    assert scheduler.metrics[JobClass.PRELOAD].failed == 1


async def test_shutdown_with_jobs_in_flight_loses_none_silently() -> None:
    scheduler = Scheduler(workers=1)
    finished = []
    async with running(scheduler) as tg:

        async def long() -> None:
            await anyio.sleep(60)
            finished.append("long")

        in_flight = scheduler.submit("long", JobClass.BACKGROUND, long)
        waiting = scheduler.submit("later", JobClass.BACKGROUND, long)
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    for job in (in_flight, waiting):
        assert job.state == "cancelled" and job.done.is_set()
        with pytest.raises(JobCancelled, match="shutting down"):
            await job.wait()
    assert finished == []
    assert scheduler.metrics[JobClass.BACKGROUND].cancelled == 2
    snapshot = scheduler.snapshot()
    assert snapshot["background"]["cancelled"] == 2 and snapshot["interactive"]["queued"] == 0


async def test_a_failed_job_is_logged_where_it_fails(caplog: pytest.LogCaptureFixture) -> None:
    """Our errors as one warning line; anything else (a bug) at ERROR with its traceback."""
    scheduler = Scheduler(workers=1)
    async with running(scheduler):

        async def locked() -> None:
            raise StoreBusy("the database is locked by another process; try again in a moment")

        async def bug() -> None:
            raise KeyError("items")

        with pytest.raises(StoreBusy):
            await scheduler.submit(("pack", "task_1", "bob"), JobClass.BACKGROUND, locked).wait()
        with pytest.raises(KeyError):
            await scheduler.submit("bug", JobClass.PRELOAD, bug).wait()
    records = [r for r in caplog.records if r.name == "daemon.scheduler"]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        (
            "WARNING",
            "background job pack/task_1/bob failed:"
            " the database is locked by another process; try again in a moment",
        ),
        ("ERROR", "preload job bug failed"),
    ]
    assert records[0].exc_info is None and records[1].exc_info is not None
