"""Admission control: a service takes on only as many requests as it can serve promptly, and tells
the rest at once to come back (503 with ``Retry-After``) instead of queueing them without limit.

A burst of EHR retries or provider polls must not turn into a lock-up: each request waits a bounded
time for a slot, then for a database connection (``shared.db.DatabaseBusy``); past either bound the
answer is a fast 503 that says when to retry. Probes are never queued behind requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import Request

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class Overloaded(Exception):
    """No request slot became free within the wait limit."""


class Admission:
    """At most ``limit`` requests in progress; others wait up to ``wait_seconds`` for a slot."""

    def __init__(self, limit: int, wait_seconds: float) -> None:
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._slots = asyncio.Semaphore(limit)

    async def acquire(self) -> None:
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise Overloaded from None

    def release(self) -> None:
        self._slots.release()


async def admit(request: Request) -> AsyncIterator[None]:
    """App-wide dependency: holds one slot for the request's lifetime (probes excepted)."""
    admission: Admission | None = getattr(request.app.state, "admission", None)
    if admission is None or request.url.path in PROBE_PATHS:
        yield
        return
    await admission.acquire()
    try:
        yield
    finally:
        admission.release()
