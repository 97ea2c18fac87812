"""SQLite statements with as few hand-overs to aiosqlite's thread as they need (issue 9).

aiosqlite runs each SQLite connection on a thread of its own, and SQLAlchemy's adapter hands every
statement over to it three or four times (a cursor made, the statement run, its rows fetched, the cursor
closed), each a wake-up of the thread and of the event loop (``call_soon_threadsafe``, the loop's
self-pipe, the GIL changing hands). Measured on the services' own statements, a hand-over costs more CPU
than the statement itself: about 120 µs against 20-50 µs for a small indexed read or write, and it is
paid by the event loop. This module is that adapter with a cursor that does better, installed by
``shared.db.Database`` as the engine's DB-API module (``create_async_engine(module=...)``):

- every statement is ONE hand-over: made, run, fetched and closed in one call on the thread;
- a statement on the connection that holds SQLite's write lock (inside ``Database``'s writer slot, after
  ``BEGIN IMMEDIATE``) runs on the event loop itself, with no hand-over at all. It cannot wait there:
  the file's lock is this connection's already, so SQLite's busy handler is never entered, and the
  statements of a write transaction are small by design (a batch of inserts, a guarded update). What may
  wait stays on the thread: ``BEGIN IMMEDIATE`` when another process holds the lock (it is first tried
  on the loop with SQLite's busy handler off, and takes the lock there at once when it is free, as it
  is unless the CLI writes: ``begin_without_waiting``), ``COMMIT`` (its fsync and any checkpoint, which
  the loop overlaps with other requests' work), and every read outside a write transaction (a report's
  scan), except the small indexed reads on the hot path that ask for the loop with ``small_reads()`` (the
  outbox relay's): tried there the same way, they wait on the thread only when SQLite would make them
  wait. A deferred ``BEGIN`` (no lock until the first statement) and a ``ROLLBACK`` (giving locks up)
  cannot wait and run on the loop too. A bulk job that writes for long (an ONSPD import) asks for the
  thread throughout with ``offloaded()``, so the service keeps answering meanwhile.
"""

from __future__ import annotations

import collections
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_

# The aiosqlite connection whose transaction holds the file's write lock in this task (set by
# ``shared.db.Database`` inside its writer slot); its statements run on the event loop.
_LOCK_HOLDER: ContextVar[aiosqlite.Connection | None] = ContextVar("pathways_sqlite_lock_holder", default=None)
_OFFLOADED: ContextVar[bool] = ContextVar("pathways_sqlite_offloaded", default=False)
_SMALL_READS: ContextVar[bool] = ContextVar("pathways_sqlite_small_reads", default=False)


@contextmanager
def holding_write_lock(driver_connection: aiosqlite.Connection) -> Iterator[None]:
    """While inside, ``driver_connection`` holds SQLite's write lock (``BEGIN IMMEDIATE`` done)."""
    token = _LOCK_HOLDER.set(driver_connection)
    try:
        yield
    finally:
        _LOCK_HOLDER.reset(token)


@contextmanager
def offloaded() -> Iterator[None]:
    """Every statement inside runs on the driver's thread (one hand-over each): for bulk work that would
    otherwise hold the event loop for long."""
    token = _OFFLOADED.set(True)
    try:
        yield
    finally:
        _OFFLOADED.reset(token)


@contextmanager
def small_reads() -> Iterator[None]:
    """Reads inside (outside a write transaction) run on the event loop when they can without waiting, as
    ``BEGIN IMMEDIATE`` does (``without_waiting``), and on the thread only when SQLite would wait: for
    small indexed reads on the hot path (the outbox relay's), where a hand-over to the thread costs more
    than the read and delays what it reads for a turn of the event loop. Never for a scan."""
    token = _SMALL_READS.set(True)
    try:
        yield
    finally:
        _SMALL_READS.reset(token)


Outcome = tuple[Any, int, int | None, list[Any]]


def _run(raw: sqlite3.Connection, operation: str, parameters: Any) -> Outcome:
    cursor = raw.cursor()
    try:
        cursor.execute(operation, () if parameters is None else parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


def _run_many(raw: sqlite3.Connection, operation: str, seq_of_parameters: Sequence[Any]) -> Outcome:
    cursor = raw.cursor()
    try:
        cursor.executemany(operation, seq_of_parameters)
        return None, cursor.rowcount, cursor.lastrowid, []
    finally:
        cursor.close()


async def _here(function: Any, *args: Any) -> Outcome:
    # Run on the event loop, as a coroutine: SQLAlchemy's async layer requires each statement to await
    # something, and a coroutine that never suspends costs a greenlet switch, not a loop turn.
    return function(*args)  # type: ignore[no-any-return]


class _Busy(Exception):
    """SQLite would have waited for another connection's lock (``without_waiting``)."""


def without_waiting(function: Any, raw: sqlite3.Connection, *args: Any) -> Any:
    """``function(raw, *args)`` with SQLite's busy handler off, so that it never waits for another
    connection: ``_Busy`` when it would have (SQLITE_BUSY, nothing done: a BEGIN or a read), and the caller
    then runs it on the thread, where waiting is harmless. The connection's busy timeout is put back."""
    timeout = raw.execute("PRAGMA busy_timeout").fetchone()[0]
    raw.execute("PRAGMA busy_timeout = 0").close()
    try:
        return function(raw, *args)
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
            raise _Busy from None
        raise
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(timeout)}").close()


def begin_without_waiting(raw: sqlite3.Connection, statement: str) -> bool:
    """``statement`` (a BEGIN that takes the write lock) run only if the lock is free now: True when it
    was, False when another connection holds it (nothing done; the caller waits for it on the thread)."""
    try:
        without_waiting(execute_and_close, raw, statement)
    except _Busy:
        return False
    return True


def execute_and_close(raw: sqlite3.Connection, statement: str) -> None:
    raw.execute(statement).close()


def use_wal(raw: sqlite3.Connection, timeout: float) -> None:
    """Put the database file in WAL mode (kept in the file: a no-op once it is), waiting up to ``timeout``
    seconds for other connections. SQLite does not call its busy handler for this change: processes that
    open a new file together (replicas starting at once) got "database is locked" at once, whatever the
    busy timeout, so the attempt is repeated here until the file is WAL or the time is up."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            raw.execute("PRAGMA journal_mode=WAL").close()  # an in-memory database stays "memory"
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def run_here(function: Any, *args: Any) -> Any:
    """Run ``function(*args)`` on the event loop, from SQLAlchemy's synchronous side: for what cannot wait
    (a deferred BEGIN, a ROLLBACK)."""
    return await_(_here(function, *args))


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statement is run, fetched and closed in one call (see the module doc)."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:  # no driver cursor
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    async def _async_soft_close(self) -> None:
        return None  # nothing open: the rows were fetched and the driver's cursor closed already

    def close(self) -> None:
        self._rows.clear()

    def _call(self, function: Any, *args: Any) -> Outcome:
        connection = self._connection
        try:
            if not _OFFLOADED.get():
                if _LOCK_HOLDER.get() is connection:
                    return await_(_here(function, connection._conn, *args))
                if _SMALL_READS.get() and _LOCK_HOLDER.get() is None:
                    try:
                        return await_(_here(without_waiting, function, connection._conn, *args))
                    except _Busy:
                        pass  # another connection holds what the read needs: it waits on the thread
            return await_(connection._execute(function, connection._conn, *args))  # type: ignore[no-any-return]
        except Exception as error:  # noqa: BLE001 - SQLAlchemy's adapter maps the driver's errors
            self._adapt_connection._handle_exception(error)

    def execute(self, operation: Any, parameters: Any = None) -> None:
        self._description, self._rowcount, self._lastrowid, rows = self._call(_run, operation, parameters)
        self._rows = collections.deque(rows)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> None:
        self._description, self._rowcount, self._lastrowid, _ = self._call(
            _run_many, operation, seq_of_parameters
        )
        self._rows.clear()


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor

    def rollback(self) -> None:
        # A rollback never waits (it gives up the transaction's locks; in WAL mode the file is untouched)
        # and never syncs: it runs on the event loop, not as a hand-over to the thread.
        raw = self._connection._connection
        if raw is not None:
            try:
                run_here(raw.rollback)
            except Exception as error:  # noqa: BLE001 - SQLAlchemy's adapter maps the driver's errors
                self._handle_exception(error)


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        return _Connection(self, super().connect(*arg, **kw)._connection)


def dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DB-API module for ``create_async_engine(..., module=dbapi())`` on a ``sqlite+aiosqlite`` URL."""
    return _DBAPI(aiosqlite, sqlite3)
