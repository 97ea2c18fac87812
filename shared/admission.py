"""Admission control: a service takes on only as many requests as it can serve promptly, and tells
the rest to come back (503 with ``Retry-After``) instead of queueing them without limit.

A burst of EHR retries or provider polls must not turn into a lock-up: each request waits a bounded
time for a slot, then for a database connection (``shared.db.DatabaseBusy``); past either bound the
answer is a 503 that says when to retry. The slot is taken in a plain ASGI middleware, before routing,
dependencies or the body: when a service is saturated, saying "busy" has to cost next to nothing, or
the refusals themselves eat the capacity. Probes are never queued behind requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

# What a saturated service answers, given the request path and the Retry-After seconds.
BusyResponse = Callable[[str, int], Response]


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


class AdmissionMiddleware:
    """Holds one slot of ``app.state.admission`` for each HTTP request (probes excepted); answers
    ``app.state.busy_response`` at once when none came free in time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state if "app" in scope else None
        admission: Admission | None = getattr(state, "admission", None)
        if scope["type"] != "http" or admission is None or scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            await admission.acquire()
        except Overloaded:
            retry_after = state.settings.busy_retry_after_seconds  # type: ignore[union-attr]
            response = state.busy_response(scope["path"], retry_after)  # type: ignore[union-attr]
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            admission.release()
