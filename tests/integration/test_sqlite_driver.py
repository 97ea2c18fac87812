"""How SQLite statements reach aiosqlite's thread (shared.sqlite_driver, issue 9): inside a write transaction
only COMMIT is handed over (BEGIN IMMEDIATE is tried on the event loop without waiting, and statements on
the lock holder run there too); when another connection holds the file's lock, BEGIN IMMEDIATE waits for
it on the thread, with the event loop free meanwhile; a read outside a write transaction costs one
hand-over per statement, except the small reads that ask to run on the loop (the outbox relay's), which
wait on the thread only when another connection would make them wait; a bulk job asked to be offloaded
hands every statement over; a new file is put in WAL mode even when another connection is writing to it;
and what the statements do is unchanged either way."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import text

from shared import sqlite_driver
from shared.db import SQLITE_BUSY_TIMEOUT_MS, Database
from shared.sqlite_driver import offloaded, small_reads


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


async def _small_read(db: Database) -> tuple[list[str], int]:
    """The rows, read as a small read, and the busy timeout of the connection that read them, afterwards."""
    async with db.engine.connect() as connection:
        with small_reads():
            rows = list((await connection.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all())
        return rows, (await connection.execute(text("PRAGMA busy_timeout"))).scalar_one()


async def test_a_small_read_runs_on_the_loop(db: Database, hand_overs: list[int]):
    await _write_ten(db)
    hand_overs[0] = 0
    assert await _small_read(db) == ([f"row {n}" for n in range(10)], SQLITE_BUSY_TIMEOUT_MS)
    assert hand_overs[0] == 1  # the PRAGMA read after it, not a small read; the read itself ran on the loop


async def test_a_small_read_that_sqlite_would_make_wait_is_read_on_the_thread(
    db: Database, hand_overs: list[int], monkeypatch: pytest.MonkeyPatch
):
    """In WAL mode a reader waits only in rare moments (another connection recovering the file after a
    crash): SQLite's answer then, SQLITE_BUSY at once with the busy handler off, is stood in for here."""
    await _write_ten(db)
    hand_overs[0] = 0
    run = sqlite_driver._run
    on_the_loop = threading.current_thread()

    def busy_on_the_loop(raw: sqlite3.Connection, operation: str, parameters: object) -> object:
        if threading.current_thread() is on_the_loop and operation.startswith("SELECT v"):
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
            raise error
        return run(raw, operation, parameters)

    monkeypatch.setattr(sqlite_driver, "_run", busy_on_the_loop)
    # Tried on the loop, then read on the thread, where waiting is harmless; the connection's busy
    # timeout is its own again (read on the thread too: the second hand-over).
    assert await _small_read(db) == ([f"row {n}" for n in range(10)], SQLITE_BUSY_TIMEOUT_MS)
    assert hand_overs[0] == 2


async def test_a_new_file_is_put_in_wal_mode_once_another_writer_lets_go(path: Path):
    """SQLite does not wait for a switch to WAL mode: with another connection writing to a new file (a
    replica that started first), "database is locked" came at once, whatever the busy timeout. The
    switch is retried until the writer lets go, on aiosqlite's thread: the writer here lets go only from
    the event loop, after it has run a few turns, so a connection that waited on the loop would never
    get its file."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE first (id INTEGER PRIMARY KEY)")
    other.execute("BEGIN IMMEDIATE")

    async def let_go_once_the_loop_has_turned() -> None:
        for _ in range(5):
            await asyncio.sleep(0.01)
        other.execute("COMMIT")

    letting_go = asyncio.create_task(let_go_once_the_loop_has_turned())
    database = Database(f"sqlite+aiosqlite:///{path}", [])
    try:
        async with database.engine.connect() as connection:
            mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
        assert letting_go.done()  # the file was switched only after the writer let go
    finally:
        letting_go.cancel()
        other.close()
        await database.dispose()
    assert mode == "wal"
