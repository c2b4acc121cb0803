"""The daemon's minute-by-minute history of search latency and queue depth (daemon/metrics_history.py), and
the fair gate that reports each search's time to it."""

from __future__ import annotations

import anyio
import pytest

from daemon.fairness import FairGate
from daemon.metrics_history import MAX_SAMPLES, MetricsHistory, queue_depths


class Clock:
    """Seconds since the epoch, moved by the test (the history's seam for minute boundaries)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_each_minute_keeps_its_searches_percentiles_and_deepest_queues() -> None:
    clock = Clock(1_800_000_000.0)  # 2027-01-15T08:00:00Z, a minute's start
    history = MetricsHistory(clock=clock)
    for ms in range(1, 101):  # 1..100 ms
        history.search_took(ms / 1000)
    history.sample({"interactive": 2, "background": 5})
    history.sample({"interactive": 7, "background": 1})
    clock.now += 120  # one minute with nothing, then the current one
    history.search_took(0.5)
    minutes = history.history()
    assert [m.minute for m in minutes] == ["2027-01-15T08:00Z", "2027-01-15T08:01Z", "2027-01-15T08:02Z"]
    first, empty, last = minutes
    assert (first.searches, first.p50_ms, first.p99_ms) == (100, 50.0, 99.0)
    assert first.queued == {"background": 5, "interactive": 7}
    assert (empty.searches, empty.p50_ms, empty.p99_ms) == (0, None, None)
    assert empty.queued == {"background": 0, "interactive": 0}
    assert (last.searches, last.p50_ms, last.p99_ms) == (1, 500.0, 500.0)


def test_the_ring_keeps_a_fixed_number_of_minutes_and_samples_per_minute() -> None:
    clock = Clock(1_800_000_000.0)
    history = MetricsHistory(minutes=5, clock=clock)
    for _ in range(30):
        history.search_took(0.01)
        clock.now += 60
    minutes = history.history()
    assert len(minutes) == 5 and minutes[-1].minute == "2027-01-15T08:30Z"
    busy = MetricsHistory(clock=clock)
    for _ in range(MAX_SAMPLES * 3):
        busy.search_took(0.002)
    (minute,) = busy.history()
    assert minute.searches == MAX_SAMPLES * 3 and minute.p99_ms == 2.0


@pytest.mark.anyio
async def test_the_gate_reports_each_completed_calls_time_waiting_included() -> None:
    took: list[float] = []
    gate = FairGate(slots=1, observe=took.append)
    release = anyio.Event()

    async def first() -> None:
        async with gate.slot("a"):
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await anyio.sleep(0.05)
        tg.start_soon(first)  # waits for the first to leave
        await anyio.sleep(0.2)
        release.set()
    assert len(took) == 2 and min(took) >= 0.2
    with pytest.raises(ValueError):
        async with gate.slot("a"):
            raise ValueError("a failed call is not counted")
    assert len(took) == 2


@pytest.mark.anyio
async def test_the_sampling_loop_reads_the_scheduler_and_the_gate() -> None:
    gate = FairGate(slots=1)
    snapshot = {"interactive": {"queued": 3.0, "running": 1.0}, "background": {"queued": 0.0}}
    history = MetricsHistory(sample_s=0.01)
    async with anyio.create_task_group() as tg:
        await tg.start(history.run, queue_depths(lambda: snapshot, gate.waiting))
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert history.history()[-1].queued == {"background": 0, "interactive": 3, "searches waiting": 0}
