"""How SQLite statements reach aiosqlite's thread (shared.sqlite_driver, issue 9): inside a write transaction
only BEGIN IMMEDIATE and COMMIT are handed over (statements on the lock holder run on the event loop); a
read outside one costs one hand-over per statement; a bulk job asked to be offloaded hands every statement
over; and what the statements do is unchanged either way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import text

from shared.db import Database
from shared.sqlite_driver import offloaded


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}", [])
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


async def test_a_write_transaction_hands_over_only_its_begin_and_commit(db: Database, hand_overs: list[int]):
    await _write_ten(db)
    assert hand_overs[0] == 2  # BEGIN IMMEDIATE and COMMIT; the ten inserts ran on the event loop
    async with db.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
    assert rows == [f"row {n}" for n in range(10)]
    assert hand_overs[0] == 3  # the read outside a write transaction: one hand-over (BEGIN and ROLLBACK on the loop)


async def test_an_offloaded_job_hands_every_statement_over(db: Database, hand_overs: list[int]):
    with offloaded():
        await _write_ten(db)
    assert hand_overs[0] == 12
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
