"""How SQLite statements reach aiosqlite's thread (shared.sqlite_driver, issue 9): inside a write transaction
only COMMIT is handed over (BEGIN IMMEDIATE is tried on the event loop without waiting, and statements on
the lock holder run there too); when another connection holds the file's lock, BEGIN IMMEDIATE waits for
it on the thread, with the event loop free meanwhile; a read outside a write transaction costs one
hand-over per statement; a bulk job asked to be offloaded hands every statement over; and what the
statements do is unchanged either way."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import text

from shared.db import SQLITE_BUSY_TIMEOUT_MS, Database
from shared.sqlite_driver import offloaded


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "driver.db"


@pytest.fixture
async def db(path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{path}", [])
    await database.create_all()
    async with database.transaction() as session:
        await (await session.connection()).execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    yield database
    await database.dispose()


@pytest.fixture
def hand_overs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    counted = [0]
    original = aiosqlite.Connection._execute

    async def counting(self, function, *args, **kwargs):  # type: ignore[no-untyped-def]
        counted[0] += 1
        return await original(self, function, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    yield counted


async def _write_ten(db: Database) -> None:
    async with db.transaction() as session:
        connection = await session.connection()
        for n in range(10):
            await connection.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": f"row {n}"})


async def _busy_timeout(db: Database) -> int:
    """The busy timeout of the connection a write transaction gets, read inside one (after its BEGIN)."""
    async with db.transaction() as session:
        return (await (await session.connection()).execute(text("PRAGMA busy_timeout"))).scalar_one()


async def test_a_write_transaction_hands_over_only_its_commit(db: Database, hand_overs: list[int]):
    await _write_ten(db)
    assert hand_overs[0] == 1  # COMMIT; BEGIN IMMEDIATE (the lock was free) and the ten inserts ran on the loop
    async with db.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
    assert rows == [f"row {n}" for n in range(10)]
    assert hand_overs[0] == 2  # the read outside a write transaction: one hand-over (BEGIN and ROLLBACK on the loop)
    # The attempt turned SQLite's busy handler off for itself only: the connection waits as before.
    assert await _busy_timeout(db) == SQLITE_BUSY_TIMEOUT_MS


async def test_a_write_waits_on_the_thread_while_another_connection_holds_the_lock(
    db: Database, path: Path, hand_overs: list[int]
):
    other = sqlite3.connect(path, isolation_level=None)  # another process's connection, as the CLI's
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t (v) VALUES ('theirs')")
        writing = asyncio.create_task(_write_ten(db))
        ticks = 0
        for _ in range(20):  # the event loop keeps running while the write waits for the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not writing.done()
        other.execute("COMMIT")
    finally:
        other.close()
    await asyncio.wait_for(writing, 10)
    assert hand_overs[0] == 2  # BEGIN IMMEDIATE, waiting on the thread, and COMMIT
    async with db.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
    assert rows == ["theirs", *(f"row {n}" for n in range(10))]
    assert await _busy_timeout(db) == SQLITE_BUSY_TIMEOUT_MS


async def test_an_offloaded_job_hands_every_statement_over(db: Database, hand_overs: list[int]):
    with offloaded():
        await _write_ten(db)
    assert hand_overs[0] == 11  # the ten inserts and COMMIT (BEGIN IMMEDIATE never waits on the loop)
    async with db.engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one() == 10


async def test_a_failing_statement_on_the_loop_rolls_the_transaction_back(db: Database):
    with pytest.raises(Exception, match="no such table"):
        async with db.transaction() as session:
            connection = await session.connection()
            await connection.execute(text("INSERT INTO t (v) VALUES ('kept?')"))
            await connection.execute(text("INSERT INTO missing (v) VALUES ('x')"))
    async with db.engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
