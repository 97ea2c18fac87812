"""Transactional outbox: events are written in the same transaction as the change they announce,
and a relay publishes them to JetStream. A crash between commit and publish loses nothing, and NATS
being down never fails a request: the relay publishes once NATS is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row, Table, Text, bindparam, func, select, update
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.background import PeriodicWorker
from shared.bus import Bus, Outgoing
from shared.db import Database, insert_at_commit, utc_field
from shared.events import Event, utcnow
from shared.group_commit import row_values
from shared.sqlite_driver import small_reads
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


OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
# The relay's statements, built once (building them per step showed in the profile).
_UNPUBLISHED = (
    select(OUTBOX.c.id, OUTBOX.c.event_id, OUTBOX.c.subject, OUTBOX.c.payload, OUTBOX.c.headers)
    .where(OUTBOX.c.published_at.is_(None))
    .order_by(OUTBOX.c.id)
    .limit(bindparam("batch"))
)
# The same, leaving out the rows published already whose mark is still to be written.
_UNPUBLISHED_EXCEPT = _UNPUBLISHED.where(OUTBOX.c.id.not_in(bindparam("published", expanding=True)))
_MARK_PUBLISHED = (
    update(OUTBOX)
    .where(OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(published_at=bindparam("at"))
)


def outbox_message(event: Event) -> tuple[Table, dict[str, Any]]:
    """The outbox row for an event, as its table and column values (for ``shared.group_commit``, which
    inserts it with Core). Built before a write transaction when the work allows, so that the
    transaction itself stays short (on SQLite it holds the one writer slot); without an ORM instance,
    whose instrumented attributes cost more than the rest of the row (issue 9's profile)."""
    return row_values(OutboxMessage, **_outbox_values(event))


def _outbox_values(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "subject": event.subject,
        "payload": event.model_dump_json(),
        "headers": stored_context(),
        "created_at": utcnow(),
    }


def enqueue(session: AsyncSession, event: Event) -> None:
    """Add an event to the outbox inside the caller's transaction.

    The row is inserted when the transaction commits, with the transaction's other events in one
    statement (``shared.db.insert_at_commit``): nothing reads the outbox before then, and a consumer's
    batch of events then costs one outbox statement rather than one ORM object and insert each.
    """
    insert_at_commit(session, OUTBOX, _outbox_values(event))


async def outbox_depth(db: Database) -> int:
    """Events committed and not yet published (grows while NATS is away)."""
    async with db.engine.connect() as connection:
        return int(
            (
                await connection.execute(
                    select(func.count()).select_from(OUTBOX).where(OUTBOX.c.published_at.is_(None))
                )
            ).scalar_one()
        )


class OutboxRelay:
    """Publishes committed outbox rows in order; woken by each commit that wrote outbox rows (``Database.on_outbox``),
    polls as a safety net (rows left by a crash, or committed by another process).

    What it published is marked as such a little later (within ``mark_delay`` seconds, or once a batch has
    gathered), in one UPDATE for all published meanwhile: under load a mark per publish was a write
    transaction per consumed event, a third of a service's transactions (issue 9). Until marked, the
    rows are left out of the relay's reads. A crash before the mark publishes them again on restart with
    the same ``Nats-Msg-Id``: JetStream drops the repeat within its duplicate window, and every consumer's
    inbox after it, as for any redelivery.
    """

    def __init__(self, db: Database, bus: Bus, *, poll_interval: float = 1.0, batch: int = 100,
                 mark_delay: float = 0.1) -> None:
        self.db = db
        self.bus = bus
        self.batch = batch
        self.mark_delay = mark_delay
        self.worker = PeriodicWorker("outbox-relay", self._step, interval=poll_interval)
        db.on_outbox.append(self.worker.wake)
        self._published: list[int] = []  # published, not yet marked
        self._mark_by: float | None = None  # loop time by which they are marked
        self._mark_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
        if self._mark_timer is not None:
            self._mark_timer.cancel()
        try:
            await self.mark_published()
        except Exception as exc:  # noqa: BLE001 - the rows are published again at the next start (deduplicated)
            log.warning("outbox relay: published rows not marked at stop (%s)", type(exc).__name__)

    async def _step(self) -> bool:
        # NATS or the database being away is logged by the worker, which tries again on the next wake.
        return await self.publish_pending() == self.batch

    async def mark_published(self) -> None:
        """Write the marks of everything published so far."""
        if not self._published:
            return
        ids = list(self._published)
        async with self.db.transaction(announce=False) as session:
            connection = await session.connection()
            await connection.execute(_MARK_PUBLISHED, {"ids": ids, "at": utcnow()})
        del self._published[: len(ids)]
        self._mark_by = None

    async def publish_pending(self) -> int:
        """Publish up to one batch of unpublished events; returns how many were read.

        The batch goes out in order with its JetStream acks awaited together (``Bus.publish_many``); what
        was stored is marked published later, with what the next steps publish (see the class). No
        connection is held while waiting for the acks, and a mark is one short write: the relay does not
        starve requests of connections or of the SQLite writer. The marks due are written after the
        step's publish, never before it: a new event does not wait for a turn of the writer slot (issue 9).
        An event that failed is published again on a later step.
        """
        rows = await self._unpublished() if self.bus.ready else []
        failed = await self._publish(rows) if rows else None
        due = self._mark_by is not None and asyncio.get_running_loop().time() >= self._mark_by
        if not rows or due or len(self._published) >= self.batch:
            await self.mark_published()  # quiet (nothing to gather the marks with), due, or a batch gathered
        if failed is not None:
            raise failed  # the worker logs its type and tries again on its next step
        return len(rows)

    async def _unpublished(self) -> Sequence[Row[Any]]:
        # Core: rows read, never ORM objects. A small indexed read: on SQLite it runs on the event loop.
        with small_reads():
            async with self.db.engine.connect() as connection:
                if self._published:
                    query = connection.execute(
                        _UNPUBLISHED_EXCEPT, {"batch": self.batch, "published": list(self._published)}
                    )
                else:
                    query = connection.execute(_UNPUBLISHED, {"batch": self.batch})
                return (await query).all()

    async def _publish(self, rows: Sequence[Row[Any]]) -> BaseException | None:
        """Publish ``rows`` and remember those published for the next mark; the first failure, if any."""
        outcomes = await self.bus.publish_many(
            [
                Outgoing(row.subject, row.payload.encode(), str(row.event_id), json.loads(row.headers))
                for row in rows
            ]
        )
        published = [row.id for row, error in zip(rows, outcomes, strict=True) if error is None]
        if published:
            self._published.extend(published)
            if self._mark_by is None:
                loop = asyncio.get_running_loop()
                self._mark_by = loop.time() + self.mark_delay
                self._mark_timer = loop.call_later(self.mark_delay, self.worker.wake)
        return next((error for error in outcomes if error is not None), None)
