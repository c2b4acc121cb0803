"""A fair gate for expensive calls: a bounded number run at once, and when callers must wait, agents take
turns, so one agent's burst of calls cannot starve another agent's single call.

Waiting callers queue per agent; each freed slot goes to the agent at the head of the rotation, which then
moves to its back. An agent that starts waiting joins the back of the rotation, so it waits for at most one
call of each agent already waiting, however many calls those agents have queued.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio


class _Waiter:
    def __init__(self) -> None:
        self.admitted = anyio.Event()


class FairGate:
    def __init__(self, slots: int, observe: Callable[[float], None] | None = None) -> None:
        """`observe`, if given, hears how long each call that completed spent here, waiting included, in
        seconds (daemon/metrics_history.py charts it for searches)."""
        if slots < 1:
            raise ValueError(f"a gate needs at least one slot, got {slots}")
        self.slots = slots
        self._observe = observe
        self._busy = 0
        self._waiting: OrderedDict[str, deque[_Waiter]] = OrderedDict()  # the rotation, head first

    @property
    def busy(self) -> int:
        return self._busy

    def waiting(self, agent: str | None = None) -> int:
        """How many calls wait for a slot (of `agent`, or of everyone)."""
        if agent is not None:
            return len(self._waiting.get(agent, ()))
        return sum(len(queue) for queue in self._waiting.values())

    @asynccontextmanager
    async def slot(self, agent: str) -> AsyncIterator[None]:
        """Hold one slot for the block, waiting for the agent's turn if all are busy."""
        asked = anyio.current_time()
        if self._busy < self.slots and not self._waiting:
            self._busy += 1
        else:
            waiter = _Waiter()
            self._waiting.setdefault(agent, deque()).append(waiter)
            try:
                await waiter.admitted.wait()
            except BaseException:
                if waiter.admitted.is_set():
                    self._release()  # handed a slot in the same moment it was cancelled: pass it on
                else:
                    self._withdraw(agent, waiter)
                raise
        try:
            yield
        finally:
            self._release()
        if self._observe is not None:  # only a call that completed: a failed one's time says nothing
            self._observe(anyio.current_time() - asked)

    def _withdraw(self, agent: str, waiter: _Waiter) -> None:
        queue = self._waiting[agent]
        queue.remove(waiter)
        if not queue:
            del self._waiting[agent]

    def _release(self) -> None:
        """Hand the freed slot to the next agent in the rotation, or free it."""
        if not self._waiting:
            self._busy -= 1
            return
        agent, queue = self._waiting.popitem(last=False)
        waiter = queue.popleft()
        if queue:
            self._waiting[agent] = queue  # to the back of the rotation
        waiter.admitted.set()
