"""Change events: what happened, published after the transaction that made it commits.

Publishing is synchronous and cheap (it only hands the event to subscribers); subscribers that need to do
work — rebuild a context pack, notify MCP sessions — queue it for their own task. The core never knows who
listens: the MCP layer subscribes from its side.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec


class MemoryChanged(msgspec.Struct, frozen=True):
    cube: str
    memory_id: str


class TaskChanged(msgspec.Struct, frozen=True):
    task_id: str
    agents: tuple[str, ...]  # the agents taking part


class PackReady(msgspec.Struct, frozen=True):
    task_id: str
    agent: str


class CubesChanged(msgspec.Struct, frozen=True):
    """The set of cubes some agents may read may have changed (a cube made, a grant, a policy reload)."""

    cube: str | None = None  # the one cube whose grants changed; None: any cube (a policy reload)


class AgentRevoked(msgspec.Struct, frozen=True):
    """An agent's token stopped working (the agent was disabled, its token rotated, or it was removed):
    whatever it had open must end."""

    agent: str


Change = MemoryChanged | TaskChanged | PackReady | CubesChanged | AgentRevoked


class ChangeHub:
    def __init__(self) -> None:
        self._subscribers: list[Callable[[Change], None]] = []

    def subscribe(self, subscriber: Callable[[Change], None]) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def publish(self, change: Change) -> None:
        for subscriber in list(self._subscribers):
            subscriber(change)
