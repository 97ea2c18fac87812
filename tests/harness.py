"""Run a service in-process (real lifespan: real database, real NATS) and talk to it over ASGI."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

SERVICE_TOKEN = "test-service-token"


@asynccontextmanager
async def running(app: FastAPI, *, wait_for_bus: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        if wait_for_bus:
            await app.state.runtime.bus.wait_ready(timeout=15)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Wait until an async predicate holds (events cross NATS asynchronously)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def assert_nats_refuses(url: str, **options: object) -> None:
    """A NATS connection attempt that the server must refuse (credentials, TLS): it fails at once."""
    from nats.aio.client import Client

    client = Client()
    try:
        with pytest.raises(Exception) as refused:  # noqa: PT011 - nats-py raises several kinds for a refusal
            await client.connect(url, allow_reconnect=False, connect_timeout=2, **options)
        assert refused.value is not None
    finally:
        # nats-py leaves a connection refused by the server open unless closed, and its close waits
        # forever after a failed TLS handshake (where there is nothing left to close).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.close(), 2)
