"""A background loop that does one step when woken, or after a while when nobody wakes it.

The outbox relay (woken by a commit, polling as a safety net) and the router's directory copy (woken
by ``directory.changed``, re-read on a timer) are the same shape: one place for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class WakeableLoop:
    """Runs ``step`` whenever ``wake()`` is called (wakes during a step coalesce into one more step)
    and otherwise every ``interval()`` seconds, until ``stop()``. ``step`` handles its own errors."""

    def __init__(self, name: str, step: Callable[[], Awaitable[object]], interval: Callable[[], float]) -> None:
        self.name = name
        self.step = step
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            # Cancelling alone cannot stop the loop for sure: a CancelledError that lands while
            # SQLAlchemy resets a connection is swallowed by its pool. The loop checks this flag too,
            # so stop() never hangs on a loop that missed its cancel.
            self._stopping = True
            self._wake.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
            # arrives as the wake-up completes.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval()):
                    await self._wake.wait()
            self._wake.clear()
            if not self._stopping:
                await self.step()
