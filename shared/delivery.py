"""Background work that must survive restarts: a loop woken on commit or on a timer, and the
retry schedule for deliveries to systems outside Pathways.

The state of the work (what is due, how often it was tried) always lives in the database, never in
the loop, so a restarted process simply picks up what is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta

log = logging.getLogger(__name__)


def retry_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter before try ``attempt + 1`` (``attempt`` failed tries so far).

    Full jitter (a random delay up to the exponential bound) spreads a burst of failures so that an
    endpoint coming back is not hit by every retry at the same instant.
    """
    bound = min(cap, base * (2 ** max(attempt - 1, 0)))
    return timedelta(seconds=(rng or random).uniform(bound / 2, bound))


class PeriodicWorker:
    """Runs ``step`` whenever woken and at least every ``interval`` seconds.

    ``step`` returns whether it did a full batch, in which case it runs again at once. Errors are
    logged by type only (their messages could quote data) and the loop carries on.
    """

    def __init__(self, name: str, step: Callable[[], Awaitable[bool]], *, interval: float) -> None:
        self.name = name
        self.step = step
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

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
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()


def endpoint_refusal(url: str, *, development: bool) -> str | None:
    """Why Pathways will not send to this endpoint, or ``None`` when it may.

    Outside development only HTTPS is allowed: a notification tells a receiver that something about a
    survivor's case changed, and that fact alone must not cross a network in clear text.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "https":
        return None
    if scheme == "http" and development:
        return None
    return "endpoint must use HTTPS" if scheme == "http" else "endpoint must be an HTTPS URL"
