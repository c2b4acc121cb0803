"""Query vectors made together: the searches waiting for their turn leave their queries here, and the first
of them to need its vectors embeds every waiting query in the same model call.

One call for several short texts costs each far less than a call of its own (all-MiniLM-L6-v2 here: 7.6 ms
of CPU for one question, 5.1 each for 2, 4.1 for 4, 3.5 for 8), and concurrent searches arrive one at a
time, so the model rarely sees them together unless they wait for each other. A search's turn order (the
fair gate) is unchanged: only the moment its vectors are made moves earlier.
"""

from __future__ import annotations

import anyio
import numpy as np

from daemon.vectors import VectorIndex

__all__ = ["MAX_TEXTS", "Pending", "QueryVectors"]

# Texts in one call. The search whose turn came waits for all of them, perhaps other agents' queries: 8 keep
# that wait short (~30 ms of CPU) and already cost each text about what 16 or 32 would (3.5 ms against 3.4).
MAX_TEXTS = 8


class Pending:
    """One search's query texts and, once `finished`, their vectors (None: the model could not make them)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.vectors: np.ndarray | None = None
        self.finished = False
        self.taken = False  # in a call that is being made
        self.withdrawn = False  # its search has ended
        self.changed = anyio.Event()  # set when finished, or handed back untaken


class QueryVectors:
    def __init__(self, vectors: VectorIndex) -> None:
        self._vectors = vectors
        self._waiting: list[Pending] = []  # asked for, not taken into a call yet, oldest first
        self.calls = 0  # calls made to the model, each for one or more searches

    @property
    def waiting(self) -> int:
        """Searches whose query vectors are asked for and not being made yet."""
        return len(self._waiting)

    def ask(self, texts: list[str]) -> Pending:
        """Leave `texts` to be embedded with the next call."""
        pending = Pending(texts)
        self._waiting.append(pending)
        return pending

    def withdraw(self, pending: Pending) -> None:
        """The search ended (answered, failed or cancelled): its texts are no longer wanted."""
        pending.withdrawn = True
        if pending in self._waiting:
            self._waiting.remove(pending)

    async def vectors(self, pending: Pending) -> np.ndarray | None:
        """`pending`'s vectors: made already by another search's call, being made by one, or made now with the
        queries of the searches still waiting."""
        while not pending.finished:
            if pending.taken:
                await pending.changed.wait()
                continue
            await self._make(pending)
        return pending.vectors

    async def _make(self, own: Pending) -> None:
        batch, count = [own], len(own.texts)
        for other in self._waiting:
            if other is not own and count + len(other.texts) <= MAX_TEXTS:
                batch.append(other)
                count += len(other.texts)
        for pending in batch:
            if pending in self._waiting:
                self._waiting.remove(pending)
            pending.taken = True
        self.calls += 1
        try:
            made = await self._vectors.embed([text for pending in batch for text in pending.texts])
        except BaseException:
            # Cancelled or failed: the others are handed back to make their own (the error is `own`'s).
            for pending in reversed(batch[1:]):
                self._hand_back(pending)
            own.taken = False
            raise
        offset = 0
        for pending in batch:
            if made is not None:
                pending.vectors = made[offset : offset + len(pending.texts)]
            offset += len(pending.texts)
            pending.finished = True
            pending.changed.set()

    def _hand_back(self, pending: Pending) -> None:
        pending.taken = False
        if not pending.withdrawn:
            self._waiting.insert(0, pending)
        woken, pending.changed = pending.changed, anyio.Event()
        woken.set()
