"""What a SQLite statement costs the event loop, by how it reaches aiosqlite's thread (issue 9).

The same small indexed write and read, run N times through SQLAlchemy's async engine three ways:
SQLAlchemy's own aiosqlite adapter (three or four hand-overs to the driver's thread per statement),
``shared.sqlite_driver`` outside a write transaction (one hand-over), and ``shared.sqlite_driver`` on the
connection holding the write lock (none: the statement runs on the event loop). Prints CPU µs per
statement (this process, all threads) and wall µs.

    .venv/bin/python bench/sqlite_handover.py [--statements 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared import sqlite_driver
from support import table


async def measure(url: str, statements: int, *, module: object | None, on_loop: bool) -> tuple[float, float]:
    engine = create_async_engine(url, **({"module": module} if module is not None else {}))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)"))
    try:
        async with engine.connect() as conn:
            await conn.execute(text("BEGIN IMMEDIATE"))
            raw = (await conn.get_raw_connection()).driver_connection
            cpu, wall = time.process_time(), time.perf_counter()
            if on_loop:
                with sqlite_driver.holding_write_lock(raw):
                    await _statements(conn, statements)
            else:
                await _statements(conn, statements)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            await conn.commit()
    finally:
        await engine.dispose()
    per = 2 * statements
    return 1e6 * cpu / per, 1e6 * wall / per


async def _statements(conn: object, statements: int) -> None:
    for i in range(statements):
        await conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": "x" * 40})  # type: ignore[attr-defined]
        (await conn.execute(text("SELECT id, v FROM t WHERE id = :i"), {"i": i + 1})).all()  # type: ignore[attr-defined]


async def run(statements: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="pathways-handover-") as tmp:
        for name, module, on_loop in (
            ("SQLAlchemy's aiosqlite adapter", None, False),
            ("shared.sqlite_driver, one hand-over", sqlite_driver.dbapi(), False),
            ("shared.sqlite_driver, write lock held (on the loop)", sqlite_driver.dbapi(), True),
        ):
            url = f"sqlite+aiosqlite:///{Path(tmp) / (name.split()[0] + str(on_loop))}.db"
            cpu, wall = await measure(url, statements, module=module, on_loop=on_loop)
            rows.append([name, f"{cpu:.0f}", f"{wall:.0f}"])
    print(f"{2 * statements} statements each (an indexed insert and a read by key, alternately)")
    print(table(["path", "CPU µs per statement", "wall µs per statement"], rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--statements", type=int, default=3000)
    asyncio.run(run(parser.parse_args().statements))
    return 0


if __name__ == "__main__":
    sys.exit(main())
