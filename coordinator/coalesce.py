"""At most one run of an operation at a time: a call made while one runs waits for that run's
result instead of starting another.

For work whose cost grows with every concurrent call and whose answer is the same for all of
them, such as a fresh consistency check, which queues a command on every agent: however many
callers ask at once, one set of commands is in flight. The run is shielded from its callers: the
first going away does not cancel it for the others, and it ends within its own bounds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalesced(Generic[T]):
    def __init__(self) -> None:
        self._running: asyncio.Task[T] | None = None
        self.started = 0  # runs started, for tests and metrics
        self.waiting = 0  # callers waiting for the running run

    @property
    def running(self) -> bool:
        return self._running is not None and not self._running.done()

    async def run(self, start: Callable[[], Awaitable[T]]) -> T:
        """The result of the running run, or of one ``start()`` begins now."""
        task = self._running
        if task is None or task.done():
            task = self._running = asyncio.ensure_future(start())
            task.add_done_callback(_retrieve)
            self.started += 1
        self.waiting += 1
        try:
            return await asyncio.shield(task)
        finally:
            self.waiting -= 1


def _retrieve(task: asyncio.Task) -> None:
    """Every caller may have gone: the outcome is then nobody's, and must not be logged as a
    'Task exception was never retrieved'."""
    if not task.cancelled():
        task.exception()
