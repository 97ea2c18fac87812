"""The one shape of background loop in Pathways: do a step when woken (a commit, an event) or when a
timer fires, until stopped. The outbox relay, the router's directory copy, notify's deadlines and
webhooks, and intake's FHIR notifications all run on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class PeriodicWorker:
    """Runs ``step`` whenever woken and at least every ``interval`` seconds.

    ``step`` returns whether it did a full batch, in which case it runs again at once. Errors are
    logged by type only (their messages could quote data) and the loop carries on.
    """

    def __init__(
        self, name: str, step: Callable[[], Awaitable[bool]], *, interval: float | Callable[[], float],
        linger: float = 0.0,
    ) -> None:
        self.name = name
        self.step = step
        self.interval = interval
        # After a wake, wait this long before stepping, so that a burst of wakes (a commit per request
        # under load) costs one step rather than one each. For loops where a short delay is harmless.
        self.linger = linger
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            # The flag as well as the cancel: a cancel that lands just as an inner wait completes can be
            # swallowed (asyncio.wait_for on Python 3.11 did so), and the loop would then run on for ever.
            self._stopping = True
            self._wake.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                while not self._stopping and await self.step():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database or a peer is away: try again later
                log.warning("%s: %s; will retry", self.name, type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval() if callable(self.interval) else self.interval):
                    await self._wake.wait()
                    if self.linger and not self._stopping:
                        await asyncio.sleep(self.linger)
            self._wake.clear()
