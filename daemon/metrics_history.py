"""How the daemon has been doing, minute by minute: search latency and queue depth for the dashboard's charts.

A fixed number of minutes (two hours by default) is kept in memory, in a ring: nothing is stored, a restart
starts afresh. Each search's latency (from asking the fair gate for a slot to the answer, so waiting counts,
as the caller feels it) is added to the current minute, which keeps at most `MAX_SAMPLES` of them (a uniform
reservoir sample beyond that) for its p50 and p99. Queue depth is sampled every `sample_s` by the loop the
daemon's task group runs: each scheduler class's queued jobs and the searches waiting at the gate; a minute
keeps the deepest of its samples.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import anyio
import msgspec
from anyio.abc import TaskStatus

MAX_SAMPLES = 2000  # search latencies kept per minute for its percentiles
Depths = Callable[[], Mapping[str, int]]


class MinuteStats(msgspec.Struct, kw_only=True, frozen=True):
    """One minute of the history; a minute with no search has no percentiles."""

    minute: str  # its start, UTC, ISO-8601 to the minute
    searches: int
    p50_ms: float | None
    p99_ms: float | None
    queued: dict[str, int]  # the deepest each queue was in the minute's samples


@dataclass
class _Minute:
    start: int  # minutes since the epoch
    searches: int = 0
    latencies: list[float] = field(default_factory=list)
    queued: dict[str, int] = field(default_factory=dict)


def _percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of a sorted, non-empty list."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class MetricsHistory:
    """The ring of minutes. `clock` (seconds since the epoch) is a seam for tests of minute boundaries."""

    def __init__(
        self, *, minutes: int = 120, sample_s: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        if minutes < 1 or sample_s <= 0:
            raise ValueError(
                f"a history needs at least one minute and a positive interval: {minutes}, {sample_s}"
            )
        self.minutes_kept = minutes
        self.sample_s = sample_s
        self._clock = clock
        self._ring: deque[_Minute] = deque(maxlen=minutes)
        self._random = random.Random(0)
        self._depths: Depths | None = None

    def _current(self) -> _Minute:
        start = int(self._clock() // 60)
        if not self._ring or self._ring[-1].start != start:
            self._ring.append(_Minute(start))
        return self._ring[-1]

    def search_took(self, seconds: float) -> None:
        """Count one search that took `seconds` (the fair gate calls this as a search leaves it)."""
        minute = self._current()
        minute.searches += 1
        if len(minute.latencies) < MAX_SAMPLES:
            minute.latencies.append(seconds * 1000)
        else:  # every search has the same chance to be among the kept ones
            slot = self._random.randrange(minute.searches)
            if slot < MAX_SAMPLES:
                minute.latencies[slot] = seconds * 1000

    def sample(self, depths: Mapping[str, int]) -> None:
        """Record the queues' depths now; the minute keeps the deepest value of each."""
        minute = self._current()
        for name, depth in depths.items():
            minute.queued[name] = max(minute.queued.get(name, 0), depth)

    async def run(self, depths: Depths, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Sample `depths()` every `sample_s` until cancelled."""
        self._depths = depths
        self.sample(depths())
        task_status.started()
        while True:
            await anyio.sleep(self.sample_s)
            self.sample(depths())

    def history(self) -> list[MinuteStats]:
        """Every minute from the oldest kept to the current one, oldest first, empty minutes included."""
        if self._depths is not None:  # so the current minute shows the queues as they are now
            self.sample(self._depths())
        now = int(self._clock() // 60)
        kept = {minute.start: minute for minute in self._ring}
        first = max(min(kept, default=now), now - self.minutes_kept + 1)
        names = sorted({name for minute in self._ring for name in minute.queued})
        out = []
        for start in range(first, now + 1):
            minute = kept.get(start)
            ordered = sorted(minute.latencies) if minute else []
            out.append(
                MinuteStats(
                    minute=time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(start * 60)),
                    searches=minute.searches if minute else 0,
                    p50_ms=round(_percentile(ordered, 0.5), 2) if ordered else None,
                    p99_ms=round(_percentile(ordered, 0.99), 2) if ordered else None,
                    queued={name: minute.queued.get(name, 0) if minute else 0 for name in names},
                )
            )
        return out


def queue_depths(
    scheduler_snapshot: Callable[[], Mapping[str, Mapping[str, float]]], waiting: Callable[[], int]
) -> Depths:
    """What the loop samples: each scheduler class's queued jobs and the searches waiting for a slot."""

    def depths() -> dict[str, int]:
        out = {name: int(metrics["queued"]) for name, metrics in scheduler_snapshot().items()}
        out["searches waiting"] = waiting()
        return out

    return depths
