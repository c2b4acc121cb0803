"""Working memory: per agent, the memories it wrote or read most recently, and in which task.

In memory only (it is a cache of attention, not a record; the audit log and the task history are the
records), bounded per agent.
"""

from __future__ import annotations

import collections

import msgspec

from daemon.timeutil import now_iso

_PER_AGENT = 50


class WorkingItem(msgspec.Struct, kw_only=True):
    memory_id: str
    action: str  # "wrote" or "read"
    at: str
    task_id: str | None


class WorkingMemory:
    def __init__(self) -> None:
        self._items: dict[str, collections.deque[WorkingItem]] = {}
        self.current_task: dict[str, str] = {}  # agent -> the task it accepted most recently

    def record(self, agent: str, memory_ids: list[str], action: str, task_id: str | None = None) -> None:
        items = self._items.setdefault(agent, collections.deque(maxlen=_PER_AGENT))
        task = task_id or self.current_task.get(agent)
        for memory_id in memory_ids:
            items.append(WorkingItem(memory_id=memory_id, action=action, at=now_iso(), task_id=task))

    def recent(self, agent: str, task_id: str | None = None) -> list[WorkingItem]:
        """Newest first, without repeats; only those of `task_id` when given."""
        seen: set[str] = set()
        out = []
        for item in reversed(self._items.get(agent, ())):
            if item.memory_id in seen or (task_id is not None and item.task_id not in (task_id, None)):
                continue
            seen.add(item.memory_id)
            out.append(item)
        return out
