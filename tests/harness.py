"""Run a service in-process (real lifespan: real database, real NATS) and talk to it over ASGI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext
from sqlmodel import col, select

from shared.auth import SERVICES, service_credentials_setting
from shared.bus import EVENTS_STREAM
from shared.outbox import OutboxMessage

# Each service's own credential for internal calls (issue 13), and what every service accepts.
SERVICE_SECRETS = {name: f"pw_svc_test_{name}_credential" for name in SERVICES}
SERVICE_CREDENTIALS = service_credentials_setting(SERVICE_SECRETS)


def service_auth(name: str) -> dict[str, str]:
    """Settings for service ``name``: its own credential, and every service's accepted."""
    return {"service_credential": SERVICE_SECRETS[name], "service_credentials": SERVICE_CREDENTIALS}


def as_service(name: str) -> dict[str, str]:
    """The headers of an internal call made by service ``name``."""
    return {"Authorization": f"Bearer {SERVICE_SECRETS[name]}"}


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


async def consumer_drained(js: JetStreamContext, durable: str) -> bool:
    """Has this durable consumer handled and acked every message on its subjects? Then nothing it has
    seen can be redelivered and applied again: a positive signal to wait on instead of a sleep."""
    info = await js.consumer_info(EVENTS_STREAM, durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def outbox_empty(app: FastAPI) -> bool:
    """Has the service published every event it committed?"""
    async with app.state.runtime.db.session() as session:
        statement = select(OutboxMessage.id).where(col(OutboxMessage.published_at).is_(None)).limit(1)
        return (await session.exec(statement)).first() is None


async def pathways(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run the ``pathways`` CLI as ops would; returns its exit code and everything it printed."""
    command = Path(sys.executable).parent / "pathways"
    process = await asyncio.create_subprocess_exec(
        str(command), *args, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


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
