"""Run a service in-process (real lifespan: real database, real NATS) and talk to it over ASGI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
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


def url_for(database_url: str, service: str) -> str:
    """SQLite: a file per service, as ``make run`` has. PostgreSQL: one database for all four (a schema each)."""
    return database_url.replace("test.db", f"{service}.db") if database_url.startswith("sqlite") else database_url
