"""Transactional outbox: events are written in the same transaction as the change they announce,
and a relay publishes them to JetStream. A crash between commit and publish loses nothing, and NATS
being down never fails a request: the relay publishes once NATS is back.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from uuid import UUID

from sqlalchemy import Text, update
from sqlmodel import Field, SQLModel, col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.bus import Bus
from shared.db import Database, utc_field
from shared.background import PeriodicWorker
from shared.events import Event, utcnow
from shared.telemetry import stored_context

log = logging.getLogger(__name__)


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    event_id: UUID = Field(unique=True)
    subject: str = Field(max_length=200)
    payload: str = Field(sa_type=Text)
    headers: str = Field(default="{}", sa_type=Text)
    created_at: datetime = utc_field(default_factory=utcnow)
    published_at: datetime | None = utc_field(default=None, index=True)


def outbox_message(event: Event) -> OutboxMessage:
    """The outbox row for an event. Built before a write transaction when the work allows, so that the
    transaction itself stays short (on SQLite it holds the one writer slot)."""
    return OutboxMessage(
        event_id=event.event_id,
        subject=event.subject,
        payload=event.model_dump_json(),
        headers=stored_context(),
    )


def enqueue(session: AsyncSession, event: Event) -> None:
    """Add an event to the outbox inside the caller's transaction."""
    session.add(outbox_message(event))


async def outbox_depth(db: Database) -> int:
    """Events committed and not yet published (grows while NATS is away)."""
    async with db.session() as session:
        return int((await session.exec(
            select(func.count()).select_from(OutboxMessage).where(col(OutboxMessage.published_at).is_(None))
        )).one())


class OutboxRelay:
    """Publishes committed outbox rows in order; woken on commit, polls as a safety net."""

    def __init__(self, db: Database, bus: Bus, *, poll_interval: float = 1.0, batch: int = 100) -> None:
        self.db = db
        self.bus = bus
        self.batch = batch
        self.worker = PeriodicWorker("outbox-relay", self._step, interval=poll_interval)
        db.on_commit.append(self.worker.wake)

    def start(self) -> None:
        self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()

    async def _step(self) -> bool:
        # NATS or the database being away is logged by the worker, which tries again on the next wake.
        return await self.publish_pending() == self.batch

    async def publish_pending(self) -> int:
        """Publish up to one batch of unpublished events; returns how many were published.

        No connection is held while waiting for JetStream's acks, and the batch is marked published
        in one short write: the relay does not starve requests of connections or of the SQLite writer.
        A crash between publishing and marking republishes with the same ``Nats-Msg-Id``, which
        JetStream drops as a duplicate.
        """
        if not self.bus.ready:
            return 0
        async with self.db.session() as session:
            rows = (
                await session.exec(
                    select(OutboxMessage)
                    .where(col(OutboxMessage.published_at).is_(None))
                    .order_by(col(OutboxMessage.id))
                    .limit(self.batch)
                )
            ).all()
        published: list[int] = []
        try:
            for row in rows:  # in order: one subject's events reach consumers as they were committed
                await self.bus.publish_raw(
                    row.subject, row.payload.encode(), msg_id=str(row.event_id), headers=json.loads(row.headers)
                )
                published.append(row.id)  # type: ignore[arg-type]
        finally:
            if published:
                async with self.db.transaction(announce=False) as session:
                    await session.exec(
                        update(OutboxMessage)
                        .where(col(OutboxMessage.id).in_(published))
                        .values(published_at=utcnow())
                    )
        return len(rows)
