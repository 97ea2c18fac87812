"""The async database layer every service uses, plus the two tables every service has.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) is production. Each service owns
its tables and creates only those. ``ProcessedEvent`` is the consumer inbox that makes handlers
idempotent by ``event_id``; ``OutboxMessage`` (in ``shared.outbox``) makes "commit and publish" one
transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import DateTime, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.events import utcnow

T = TypeVar("T")


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


class Database:
    """An async engine and session factory for one service's own tables."""

    def __init__(
        self, url: str, tables: Sequence[type[SQLModel]], *, schema: str | None = None, echo: bool = False
    ) -> None:
        self.url = url
        # On PostgreSQL the service's tables live in a schema of their own, named after it, so services
        # given one database never share a table (created by ``shared.migrations``). SQLite has none:
        # each service has its own file.
        self.schema = None if url.startswith("sqlite") else schema
        from shared.outbox import OutboxMessage  # the outbox table lives beside its relay

        self.tables = [t.__table__ for t in (*tables, ProcessedEvent, OutboxMessage)]  # type: ignore[attr-defined]
        kwargs: dict[str, Any] = {"echo": echo}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10)
            if self.schema:
                kwargs["connect_args"] = {"server_settings": {"search_path": f'"{self.schema}"'}}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self.on_commit: list[Callable[[], None]] = []

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def create_all(self) -> None:
        async with self.engine.begin() as conn:
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
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that commits on success and rolls back on any error."""
        async with self._sessions() as session:
            async with session.begin():
                yield session
        self.notify_committed()

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
                if await session.get(ProcessedEvent, (consumer, event_id)) is not None:
                    return None
                session.add(ProcessedEvent(consumer=consumer, event_id=event_id))
                await session.flush()
                return await work(session)
        except IntegrityError:
            # A peer processed the same event concurrently and committed first.
            async with self.session() as session:
                if await session.get(ProcessedEvent, (consumer, event_id)) is not None:
                    return None
            raise


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
