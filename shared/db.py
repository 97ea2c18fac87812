"""The async database layer every service uses, plus the two tables every service has.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) is production. Each service owns
its tables and creates only those. ``ProcessedEvent`` is the consumer inbox that makes handlers
idempotent by ``event_id``; ``OutboxMessage`` (in ``shared.outbox``) makes "commit and publish" one
transaction.

Under load (issue 9): a request uses one session, and so at most one pooled connection at a time;
every wait for the database is bounded (the pool's timeout, and on SQLite the writer slot) and ends
in ``DatabaseBusy``, which the services answer with a fast 503 and ``Retry-After``. SQLite has one
writer: writes queue in-process for the writer slot (cheap, on the event loop) and then take the
file's write lock at once with ``BEGIN IMMEDIATE``, instead of many connections polling a locked
file through the busy handler and failing to upgrade a read into a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import DateTime, Insert, Table, bindparam, event, insert, select, text
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_only
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shared import jsontext, sqlite_driver
from shared.db_ping import ping_when_idle
from shared.events import utcnow

T = TypeVar("T")

# Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE (it will write).
_SQLITE_IMMEDIATE = "pathways_sqlite_immediate"
# How long a SQLite connection waits for another process's lock on the file (its busy handler).
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Execution options for a SQLite schema migration: BEGIN EXCLUSIVE, and foreign keys off before it (the
# pragma changes nothing inside a transaction). Such a connection is never returned to the pool.
SQLITE_MIGRATION_OPTIONS = {"pathways_sqlite_begin": "BEGIN EXCLUSIVE", "pathways_sqlite_foreign_keys_off": True}
# Set in a session's ``info`` by ``shared.audit.record``: after its commit, the audit sealer is woken.
AUDITED = "pathways_audited"
# Set in a session's ``info`` when its transaction inserted outbox rows (by any path: ``enqueue``, a group
# commit, an ORM object): after its commit the outbox relay is woken, and only then (``on_outbox``).
OUTBOX_WRITTEN = "pathways_outbox_written"
# Set in a session's ``info``: the outbox rows its transaction inserted through ``insert_at_commit`` or a
# group commit, as their column values, handed to the relay after the commit (``on_outbox``). When an
# outbox insert went another way (``_OUTBOX_UNLISTED``), the relay is told to read the table instead.
OUTBOX_ROWS = "pathways_outbox_rows"
_OUTBOX_UNLISTED = "pathways_outbox_unlisted"
_LISTING = "pathways_outbox_listing"
OUTBOX_TABLE = "outbox"
# On a connection's ``info`` while a session's transaction uses it: that session's ``info``.
_SESSION_INFO = "pathways_session_info"
# The Database whose SQLite writer slot the current task holds: a nested write would wait on itself.
_writing: ContextVar[Database | None] = ContextVar("pathways_writing", default=None)


def _remember_default_factory_signatures() -> None:
    """Make building a table row cheap again (issue 9's profile).

    SQLModel builds a row by filling each field left out from its default, and for a default factory
    pydantic first asks whether the factory takes the validated data, by inspecting its signature, every
    time (for a builtin such as ``list`` by parsing its text signature): about 0.2 ms per factory, so
    0.8 ms of CPU for one referral row (four factories) and a tenth of a millisecond for every inbox and
    outbox row. A factory's signature never changes: the answer is remembered per factory. Guarded, so a
    pydantic that renames the function (or already caches it) is left as it is.
    """
    from pydantic._internal import _fields

    original = getattr(_fields, "takes_validated_data_argument", None)
    if original is None or getattr(original, "pathways_remembered", False):
        return
    known: dict[Any, bool] = {}

    def takes_validated_data_argument(factory: Any) -> bool:
        try:
            return known[factory]
        except KeyError:
            answer = known[factory] = bool(original(factory))
            return answer
        except TypeError:  # an unhashable factory: ask every time, as pydantic does
            return bool(original(factory))

    takes_validated_data_argument.pathways_remembered = True  # type: ignore[attr-defined]
    _fields.takes_validated_data_argument = takes_validated_data_argument


_remember_default_factory_signatures()


class DatabaseBusy(PoolTimeout):
    """No connection (or, on SQLite, no writer slot) became free within the bounded wait: the
    caller should answer 503 with ``Retry-After`` rather than queue without limit."""


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite would otherwise drop the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_field(**kwargs: Any) -> Any:
    """A SQLModel field stored as a UTC timestamp."""
    return Field(sa_type=UTCDateTime, **kwargs)  # type: ignore[call-overload]


class ProcessedEvent(SQLModel, table=True):
    """Consumer inbox: an event handled by a consumer once is never handled by it again."""

    __tablename__ = "processed_event"

    consumer: str = Field(primary_key=True, max_length=100)
    event_id: UUID = Field(primary_key=True)
    processed_at: datetime = utc_field(default_factory=utcnow)


_INBOX: Table = ProcessedEvent.__table__  # type: ignore[attr-defined]

# Rows a transaction inserts when it commits, as one ``executemany`` per table (``insert_at_commit``).
_AT_COMMIT = "pathways_insert_at_commit"


def insert_at_commit(session: AsyncSession, table: Table, values: dict[str, Any]) -> None:
    """Insert a row (its column values) when the session's transaction commits, with every other row
    queued for the same table in one ``executemany`` (issue 9's profile).

    For rows nothing reads back before the commit (outbox events, inbox records): no ORM object, no
    unit of work, and a batch of consumed events pays one statement per table instead of one per row.
    A rolled-back transaction inserts none of them. Rows of one table go in the order they were queued.
    """
    session.info.setdefault(_AT_COMMIT, {}).setdefault(table, []).append(values)


@functools.cache
def upsert_statement(dialect: str, table: Table) -> Any:
    """``INSERT`` with ``on_conflict_do_nothing``/``on_conflict_do_update`` on either backend (SQLite
    and PostgreSQL spell it the same way; ``dialect`` is ``connection.dialect.name``): "store unless
    stored" in one statement, instead of a read and then a write. Build the final statement once and
    give the values as the execution's parameters, so that it comes from SQLAlchemy's compiled cache."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as backend_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as backend_insert
    return backend_insert(table)


@functools.cache
def insert_into(table: Table) -> Insert:
    """``INSERT INTO table`` built once (values given at execution, one row or many)."""
    return insert(table)


@contextlib.contextmanager
def listing_outbox_rows(connection: Connection | AsyncConnection, table: Table,
                        rows: list[dict[str, Any]]) -> Iterator[None]:
    """Around the insert of ``rows`` into ``table`` on ``connection`` (a session's, or ``statements``'s):
    once they are inserted, outbox rows are listed for the relay, which publishes them after the commit
    without reading them back (``OUTBOX_ROWS``)."""
    info = connection.info.get(_SESSION_INFO)
    if table.name != OUTBOX_TABLE or info is None:
        yield
        return
    info[_LISTING] = True
    try:
        yield
    finally:
        info.pop(_LISTING, None)
    info.setdefault(OUTBOX_ROWS, []).extend(rows)


async def insert_queued(session: AsyncSession) -> None:
    """Insert now what ``insert_at_commit`` queued (so that its errors surface here, not at commit)."""
    queued: dict[Table, list[dict[str, Any]]] | None = session.info.pop(_AT_COMMIT, None)
    if queued:
        connection = await session.connection()
        for table, rows in queued.items():
            with listing_outbox_rows(connection, table, rows):
                await connection.execute(insert_into(table), rows)


@event.listens_for(Session, "before_commit")
def _insert_queued_before_commit(session: Session) -> None:
    # Whatever path commits (``Database.transaction``, a plain ``session.commit()``), the queued rows
    # go in with it. Runs inside SQLAlchemy's greenlet on the async engine, so it may emit SQL.
    queued: dict[Table, list[dict[str, Any]]] | None = session.info.pop(_AT_COMMIT, None)
    if queued:
        connection = session.connection()
        for table, rows in queued.items():
            with listing_outbox_rows(connection, table, rows):
                connection.execute(insert_into(table), rows)


@event.listens_for(Session, "after_begin")
def _link_connection_to_session(session: Session, _transaction: SessionTransaction, connection: Connection) -> None:
    # So that a statement run on the connection (ORM or Core) can mark the session that ran it.
    connection.info[_SESSION_INFO] = session.info


def _note_outbox_insert(connection: Connection, _cursor: Any, statement: str, *_: Any) -> None:
    if statement.startswith("INSERT INTO outbox"):
        info = connection.info.get(_SESSION_INFO)
        if info is not None:
            info[OUTBOX_WRITTEN] = True
            if not info.get(_LISTING):
                info[_OUTBOX_UNLISTED] = True


@event.listens_for(Session, "after_transaction_end")
def _forget_queued_on_rollback(session: Session, transaction: SessionTransaction) -> None:
    # A transaction that ended without committing them (rolled back) takes its queued rows with it.
    if transaction.parent is None:
        session.info.pop(_AT_COMMIT, None)


def _written(info: dict[Any, Any]) -> tuple[bool, bool, list[dict[str, Any]] | None]:
    """What a transaction that just committed wrote, taken out of its session's ``info``: whether it wrote
    audit records, whether it wrote outbox rows, and those rows' values (``None`` when some went in
    without being listed: the relay then reads the table)."""
    audited = info.pop(AUDITED, False)
    outbox = info.pop(OUTBOX_WRITTEN, False)
    listed = info.pop(OUTBOX_ROWS, None)
    if info.pop(_OUTBOX_UNLISTED, False):
        listed = None
    return audited, outbox, listed


def _driver(connection: AsyncConnection) -> Any:
    # The connection is checked out already: its driver connection is read, not awaited.
    return connection.sync_connection.connection.driver_connection  # type: ignore[union-attr]


class Database:
    """An async engine and session factory for one service's own tables."""

    def __init__(
        self,
        url: str,
        tables: Sequence[type[SQLModel]],
        *,
        schema: str | None = None,
        echo: bool = False,
        wait_timeout: float = 3.0,
    ) -> None:
        self.url = url
        # On PostgreSQL the service's tables live in a schema of their own, named after it, so services
        # given one database never share a table (created by ``shared.migrations``). SQLite has none:
        # each service has its own file.
        self.schema = None if url.startswith("sqlite") else schema
        from shared.outbox import OutboxMessage  # the outbox table lives beside its relay

        self.tables = [t.__table__ for t in (*tables, ProcessedEvent, OutboxMessage)]  # type: ignore[attr-defined]
        # How long a caller may wait for a connection or the writer slot before DatabaseBusy.
        self.wait_timeout = wait_timeout
        # The pool sizes are not the fix for load: the one-session-per-request rule and the bounded
        # waits are. SQLite: readers run side by side (WAL), writers take turns in-process.
        # hide_parameters: a database error's message never quotes the row's values (identifying data).
        # JSON columns written and read by orjson (``shared.jsontext``).
        kwargs: dict[str, Any] = {"echo": echo, "pool_timeout": wait_timeout, "pool_size": 5,
                                  "max_overflow": 10, "hide_parameters": True,
                                  "json_serializer": jsontext.dumps_text, "json_deserializer": jsontext.loads}
        sqlite = url.startswith("sqlite")
        if sqlite:
            private_sqlite_files(url)
            # In-process writers never contend for the file's lock (they take turns for the writer slot,
            # whose wait is bounded). Another process or app on the same file (the CLI, services sharing
            # one file in tests) can hold it, creating tables at start-up under load for seconds: wait.
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            kwargs["pool_reset_on_return"] = None  # _sqlite_reset decides
            kwargs["module"] = sqlite_driver.dbapi()  # one hand-over per statement, none holding the lock
        else:
            # No pool_pre_ping: with asyncpg it is three round trips per checkout (shared.db_ping).
            kwargs.update(pool_size=10, max_overflow=10)
            if self.schema:
                kwargs["connect_args"] = {"server_settings": {"search_path": f'"{self.schema}"'}}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if not sqlite:
            ping_when_idle(self.engine.sync_engine)  # a connection that sat in the pool is checked first
        self._writer: asyncio.Lock | None = None
        if sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
            event.listen(self.engine.sync_engine, "reset", _sqlite_reset)
            self._writer = asyncio.Lock()
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self.on_commit: list[Callable[[], None]] = []
        # Called after a transaction that inserted outbox rows commits, with those rows' values (``None``
        # when not all of them are known): the relay publishes them. Commits that wrote none (an offer
        # noted, a Task moved) give the relay nothing to do.
        self.on_outbox: list[Callable[[list[dict[str, Any]] | None], None]] = []
        event.listen(self.engine.sync_engine, "after_cursor_execute", _note_outbox_insert)
        # Called after a transaction that wrote audit records commits (the sealer's wake).
        self.on_audit: list[Callable[[], None]] = []

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def create_all(self) -> None:
        # It writes: on SQLite take the file's lock at BEGIN (a read upgraded to a write fails at once
        # with "database is locked" when another app on the same file wrote meanwhile).
        engine = self.engine.execution_options(**{_SQLITE_IMMEDIATE: True})
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: SQLModel.metadata.create_all(sync, tables=self.tables))

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness only asks "does it answer?"
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(
        self, session: AsyncSession | None = None, *, announce: bool = True
    ) -> AsyncIterator[AsyncSession]:
        """A transaction that commits on success and rolls back on any error.

        ``announce=False`` is for bookkeeping commits that give the background loops woken by a commit
        (outbox relay, webhooks, notifications) nothing new to do: under load, a loop woken by its own
        bookkeeping would run once more for nothing after every batch.

        Given the request's session, it runs on that one: a read the session still has open is ended
        first, so the request never holds two connections, and what it loaded is expired so that the
        transaction decides on current rows. Without one, on a session of its own.
        """
        if session is None:
            async with self._sessions() as own:
                async with self._writing(own):
                    yield own
                self._committed(own.info, announce=announce)  # at once: the relay is handed its rows
        else:
            await end_read(session)
            # What the request read before is re-read inside the transaction, never trusted stale.
            session.expire_all()
            _written(session.info)  # what an earlier transaction of this session left (rolled back)
            async with self._writing(session):
                yield session
            self._committed(session.info, announce=announce)

    def _committed(self, info: dict[Any, Any], *, announce: bool) -> None:
        """Tell the background loops what the transaction that just committed wrote."""
        audited, outbox, listed = _written(info)
        if announce:
            self.notify_committed()
        if outbox:
            for callback in self.on_outbox:
                callback(listed)
        if audited:
            for callback in self.on_audit:
                callback()

    @asynccontextmanager
    async def statements(self, *, announce: bool = True) -> AsyncIterator[AsyncConnection]:
        """A write transaction on a connection, with no ORM session: for writes that only run Core
        statements (a group commit's inserts, a delivery's outcome, the relay's marks). It takes the same
        writer slot as ``transaction`` and makes the same calls after its commit; a session's unit of
        work, identity map and transaction bookkeeping cost more than such a write (issue 9's profile)."""
        info: dict[Any, Any] = {}
        async with self._writer_slot(), self.engine.connect() as connection:
            if self._writer is not None:
                await connection.execution_options(**{_SQLITE_IMMEDIATE: True})
            # What its statements wrote, as a session's would be. The dict itself is kept: after a failure
            # the connection may be invalidated, and reading ``info`` again would reconnect outside the
            # driver's greenlet (MissingGreenlet).
            linked = connection.info
            linked[_SESSION_INFO] = info
            try:
                async with connection.begin():
                    if self._writer is None:
                        yield connection
                    else:
                        with sqlite_driver.holding_write_lock(_driver(connection)):
                            yield connection
            finally:
                linked.pop(_SESSION_INFO, None)
        self._committed(info, announce=announce)

    @asynccontextmanager
    async def _writing(self, session: AsyncSession) -> AsyncIterator[None]:
        async with self._writer_slot(), session.begin():
            if self._writer is None:
                yield
            else:
                connection = await session.connection(execution_options={_SQLITE_IMMEDIATE: True})
                with sqlite_driver.holding_write_lock(_driver(connection)):
                    yield

    @asynccontextmanager
    async def _writer_slot(self) -> AsyncIterator[None]:
        """On SQLite, this process's turn to write (one write transaction at a time, the wait bounded)."""
        if self._writer is None:
            yield
            return
        if _writing.get() is self:
            raise RuntimeError("a write transaction was opened inside another on the same SQLite database")
        try:
            async with asyncio.timeout(self.wait_timeout):
                await self._writer.acquire()
        except TimeoutError:
            raise DatabaseBusy("no SQLite writer slot within the wait limit") from None
        token = _writing.set(self)
        try:
            yield
        finally:
            _writing.reset(token)
            self._writer.release()

    def notify_committed(self) -> None:
        for callback in self.on_commit:
            callback()

    async def run_once(
        self, consumer: str, event_id: UUID, work: Callable[[AsyncSession], Awaitable[T]]
    ) -> T | None:
        """Run ``work`` in one transaction with the inbox record, unless this consumer already did.

        Returns ``None`` (and does nothing) for an event already processed, so redeliveries and
        duplicates outside JetStream's window change nothing.
        """
        try:
            async with self.transaction() as session:
                if not await _inbox_claim(await session.connection(), consumer, [event_id]):
                    return None
                return await work(session)
        except IntegrityError:
            # The work's rows conflict with a peer's: if the peer processed this very event, it is done.
            async with self.engine.connect() as connection:
                if await _inbox_done(connection, consumer, [event_id]):
                    return None
            raise

    async def run_batch(
        self, consumer: str, works: Sequence[tuple[UUID, Callable[[AsyncSession], Awaitable[object]]]]
    ) -> list[BaseException | None]:
        """``run_once`` for a batch of events, in order, in ONE transaction (one commit, one fsync, one
        turn of SQLite's writer slot for the lot), each event with its inbox record.

        Returns, per event, ``None`` (done now or before) or the error it failed with. When an event's
        work fails, the batch is rolled back and each event runs again in a transaction of its own
        (``run_once``), so the failing one is reported alone and the others commit; failures are rare
        (an event ahead of the one it depends on), and the common case pays no savepoint per event.
        The same holds when the batch's rows fail to insert (a row that conflicts): that is found before
        the commit, and the events run one by one.
        When the transaction itself fails (the database away, no writer slot in time), every event
        gets that error: nothing of the batch was stored.

        The inbox costs one statement per batch, whatever its size (``_inbox_claim``).
        """
        work_failed = False
        try:
            async with self.transaction() as session:
                todo = await _inbox_claim(await session.connection(), consumer, [event_id for event_id, _ in works])
                try:
                    for event_id, work in works:
                        if event_id not in todo:
                            continue
                        todo.discard(event_id)  # the same event twice in one batch is done once
                        await work(session)
                    # The batch's own rows, now: a conflict is the batch's to sort out event by event.
                    await session.flush()
                    await insert_queued(session)
                except Exception:
                    work_failed = True
                    raise
            return [None] * len(works)
        except Exception as exc:  # noqa: BLE001 - reported per event below
            if not work_failed or len(works) == 1:
                return [exc] * len(works)
        outcomes: list[BaseException | None] = []
        for event_id, work in works:
            try:
                await self.run_once(consumer, event_id, work)
                outcomes.append(None)
            except Exception as exc:  # noqa: BLE001 - this event's failure, reported to its message
                outcomes.append(exc)
        return outcomes


async def _inbox_claim(connection: AsyncConnection, consumer: str, event_ids: Sequence[UUID]) -> set[UUID]:
    """Record the events in the consumer's inbox, in one statement, and return those recorded now: the
    others were processed before (or by a peer: on PostgreSQL the insert waits for the peer's commit,
    and skips the event if it committed, so the work is never done twice)."""
    ids = list(dict.fromkeys(event_ids))  # the same event twice in one batch is done once
    if not ids:
        return set()
    now = utcnow()
    claimed = await connection.execute(
        _inbox_insert(connection.dialect.name), [{"consumer": consumer, "event_id": e, "processed_at": now} for e in ids]
    )
    return set(claimed.scalars())


@functools.cache
def _inbox_insert(dialect: str) -> Any:
    return (upsert_statement(dialect, _INBOX).on_conflict_do_nothing(index_elements=[_INBOX.c.consumer, _INBOX.c.event_id])
            .returning(_INBOX.c.event_id))


_INBOX_DONE = select(_INBOX.c.event_id).where(
    _INBOX.c.consumer == bindparam("consumer"), _INBOX.c.event_id.in_(bindparam("event_ids", expanding=True)))


async def _inbox_done(connection: AsyncConnection, consumer: str, event_ids: Sequence[UUID]) -> set[UUID]:
    """Which of these events the consumer has processed already (one query, Core)."""
    return set((await connection.execute(_INBOX_DONE, {"consumer": consumer, "event_ids": list(event_ids)})).scalars())


async def end_read(session: AsyncSession) -> None:
    """End the read-only transaction a session has open, giving its connection back to the pool
    before the request does something slow (parsing, a network call). Loaded objects stay usable."""
    if session.in_transaction():
        await session.commit()


SQLITE_FILE_MODE = 0o600


def private_sqlite_files(url: str) -> None:
    """Make a SQLite database file readable by its owner only, before SQLite opens it.

    SQLite creates a new file with the process's umask (world-readable, 0644, by default) and gives its
    ``-wal`` and ``-shm`` files the database file's own permissions: so the file is created 0600 here,
    and an existing one (and its ``-wal``/``-shm``, made by an earlier release) is narrowed to 0600.
    """
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    database = Path(path)
    if not database.parent.is_dir():
        return  # SQLite will say so when it connects
    os.close(os.open(database, os.O_CREAT | os.O_RDWR, SQLITE_FILE_MODE))
    for file in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if file.stat().st_mode & 0o777 != SQLITE_FILE_MODE:
                file.chmod(SQLITE_FILE_MODE)


def _sqlite_begin(conn: Connection) -> None:
    # The driver's own implicit BEGIN is off (see _sqlite_pragmas): Pathways says when and how.
    options = conn.get_execution_options()
    if options.get("pathways_sqlite_foreign_keys_off"):
        conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
    statement = options.get("pathways_sqlite_begin") or ("BEGIN IMMEDIATE" if options.get(_SQLITE_IMMEDIATE) else "BEGIN")
    driver = conn.connection.driver_connection
    if not hasattr(driver, "_execute"):  # not aiosqlite (a sync engine): the plain way
        conn.exec_driver_sql(statement)
        return
    # A deferred BEGIN takes no lock (SQLite reads the file only at the first statement): it cannot wait,
    # so it runs here, with no hand-over to aiosqlite's thread. One that takes a lock (IMMEDIATE, EXCLUSIVE)
    # is tried here without waiting, and it gets the lock at once unless another process holds it (within
    # this one, ``Database``'s writer slot lets one transaction at a time ask). Only then does it wait,
    # on the thread. A hand-over to the thread and back held the writer slot for a turn of a busy event
    # loop: in notify at 50 referrals/s, transactions queued 2.5–14.5 ms (p50) for the slot (issue 9).
    try:
        if statement == "BEGIN":
            sqlite_driver.run_here(sqlite_driver.execute_and_close, driver._conn, statement)
            return
        if sqlite_driver.run_here(sqlite_driver.begin_without_waiting, driver._conn, statement):
            return
        await_only(driver._execute(sqlite_driver.execute_and_close, driver._conn, statement))
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc


def _sqlite_reset(dbapi_connection: Any, _record: Any, state: Any) -> None:
    """A connection given back to the pool is rolled back only when a transaction is still open: after a
    commit (or a rollback already done) SQLAlchemy's own reset would roll back nothing, at the cost of a
    hop to aiosqlite's thread for every session and connection (issue 9's profile). SQLAlchemy's
    "custom reset" pattern, with ``pool_reset_on_return=None``."""
    if not getattr(state, "asyncio_safe", True):
        return  # outside the event loop (a connection collected): SQLAlchemy would not roll back either
    if getattr(getattr(dbapi_connection, "driver_connection", None), "in_transaction", True):
        dbapi_connection.rollback()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # aiosqlite/pysqlite would BEGIN (deferred) by itself before the first write; _sqlite_begin does it.
    dbapi_connection.isolation_level = None
    driver = getattr(dbapi_connection, "driver_connection", None)
    if hasattr(driver, "_execute"):  # aiosqlite: on its thread, where waiting holds up nothing
        await_only(driver._execute(sqlite_driver.use_wal, driver._conn, SQLITE_BUSY_TIMEOUT_MS / 1000))
    else:
        sqlite_driver.use_wal(dbapi_connection, SQLITE_BUSY_TIMEOUT_MS / 1000)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
