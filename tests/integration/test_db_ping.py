"""PostgreSQL pooled connections are checked before use only after sitting idle (``shared.db_ping``): a
connection the server dropped while it sat in the pool is replaced before anyone uses it, and a busy service
pays no check per transaction (asyncpg's is three round trips)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.exc import DBAPIError

from shared import db_ping
from shared.db import Database
from tests.conftest import PG_HOST, PG_PORT, PG_USER, postgres_database

pytestmark = pytest.mark.postgres  # SQLite has no server to lose and no pool to check


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async with postgres_database() as url:
        database = Database(url, [])
        yield database
        await database.dispose()


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = AsyncAdapt_asyncpg_connection.ping

    def counted(self: AsyncAdapt_asyncpg_connection) -> None:
        calls.append(1)
        original(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counted)
    return calls


async def backend_pid(db: Database) -> int:
    async with db.engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def terminate(pid: int) -> None:
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_a_connection_in_use_a_moment_ago_is_not_checked_again(db: Database, pings: list[int]):
    for _ in range(10):
        async with db.transaction() as session:
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    assert pings == []


async def test_a_connection_the_server_dropped_while_idle_is_replaced_before_use(
    db: Database, pings: list[int], monkeypatch: pytest.MonkeyPatch
):
    first = await backend_pid(db)
    await terminate(first)  # as a restart, a failover or a firewall's idle timeout would
    monkeypatch.setattr(db_ping, "IDLE_SECONDS", 0.0)  # it has sat idle long enough to be checked
    # The next user gets a working connection: the dead one was found by the check and replaced.
    assert await backend_pid(db) != first
    assert len(pings) == 1


async def test_a_connection_used_a_moment_ago_that_died_fails_once_and_the_pool_starts_afresh(
    db: Database, pings: list[int]
):
    """What the check no longer covers (a server gone within the last seconds): the first statement fails
    as any statement mid-transaction would (503 + Retry-After, or the event redelivered); every connection
    that old is discarded and the next one works."""
    first = await backend_pid(db)
    await terminate(first)
    with pytest.raises(DBAPIError) as failed:
        await backend_pid(db)
    assert failed.value.connection_invalidated
    assert await backend_pid(db) != first
    assert pings == []
