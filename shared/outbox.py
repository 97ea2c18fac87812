"""Transactional outbox: events are written in the same transaction as the change they announce,
and a relay publishes them to JetStream. A crash between commit and publish loses nothing, and NATS
being down never fails a request: the relay publishes once NATS is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row, Table, Text, bindparam, func, select, update
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shared import jsontext
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
# The same, leaving out the events published already whose mark is still to be written, and those
# handed over by a commit and about to be published.
_UNPUBLISHED_EXCEPT = _UNPUBLISHED.where(OUTBOX.c.event_id.not_in(bindparam("published", expanding=True)))
_MARK_PUBLISHED = (
    update(OUTBOX)
    .where(OUTBOX.c.event_id.in_(bindparam("ids", expanding=True)))
    .values(published_at=bindparam("at"))
)
# At most this many batches of handed-over rows wait in memory; beyond them the relay reads the table.
MAX_HANDED_BATCHES = 10


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
    """Publishes committed outbox rows; handed them by each commit that wrote them (``Database.on_outbox``),
    and reads the table as a safety net: at start, at least every ``poll_interval`` seconds, and whenever a
    commit could not say which rows it wrote or a publish failed (rows left by a crash, written by another
    process, or not published while NATS was away).

    A commit's rows are published as they were inserted, without reading them back: under load a read per
    commit was a statement, a row fetch and a hop to SQLite's thread for every transaction that wrote an
    event, in every service (issue 9). Until published and marked, handed rows are left out of the reads.

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
        self.poll_interval = poll_interval
        self.mark_delay = mark_delay
        self.worker = PeriodicWorker("outbox-relay", self._step, interval=poll_interval)
        db.on_outbox.append(self.committed)
        self._handed: deque[tuple[UUID, Outgoing]] = deque()  # committed, handed over, not yet published
        self._read_at: float | None = None  # loop time of the last read of the table; None: one is due
        self._published: list[UUID] = []  # event ids published, not yet marked
        self._mark_by: float | None = None  # loop time by which they are marked
        self._mark_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.worker.start()

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.db.on_outbox.remove(self.committed)
        await self.worker.stop()
        if self._mark_timer is not None:
            self._mark_timer.cancel()
        try:
            await self.mark_published()
        except Exception as exc:  # noqa: BLE001 - the rows are published again at the next start (deduplicated)
            log.warning("outbox relay: published rows not marked at stop (%s)", type(exc).__name__)

    def committed(self, rows: list[dict[str, Any]] | None) -> None:
        """A commit wrote outbox rows: ``rows`` are their values, ``None`` when it cannot say which."""
        room = MAX_HANDED_BATCHES * self.batch - len(self._handed)
        if rows is None or not self.bus.ready or len(rows) > room:
            self._read_at = None  # they are in the table: the next step reads it
        else:
            self._handed.extend(
                (row["event_id"], _outgoing(row["subject"], row["payload"], row["event_id"], row["headers"]))
                for row in rows
            )
        self.worker.wake()

    async def _step(self) -> bool:
        # NATS or the database being away is logged by the worker, which tries again on the next wake.
        return await self.publish_pending() == self.batch

    async def mark_published(self) -> None:
        """Write the marks of everything published so far."""
        if not self._published:
            return
        ids = list(self._published)
        async with self.db.statements(announce=False) as connection:
            await connection.execute(_MARK_PUBLISHED, {"ids": ids, "at": utcnow()})
        del self._published[: len(ids)]
        self._mark_by = None

    async def publish_pending(self) -> int:
        """Publish up to one batch of unpublished events: those the table holds when a read is due, then
        those handed over by commits; returns how many it tried.

        The batch goes out in order with its JetStream acks awaited together (``Bus.publish_many``); what
        was stored is marked published later, with what the next steps publish (see the class). No
        connection is held while waiting for the acks, and a mark is one short write: the relay does not
        starve requests of connections or of the SQLite writer. The marks due are written after the
        step's publish, never before it: a new event does not wait for a turn of the writer slot (issue 9).
        An event that failed is published again after a later read.
        """
        outgoing: list[tuple[UUID, Outgoing]] = []
        if self.bus.ready:
            now = asyncio.get_running_loop().time()
            if self._read_at is None or now - self._read_at >= self.poll_interval:
                self._read_at = now
                outgoing = [(row.event_id, _outgoing(row.subject, row.payload, row.event_id, row.headers))
                            for row in await self._unpublished()]
            while self._handed and len(outgoing) < self.batch:
                outgoing.append(self._handed.popleft())
        failed = await self._publish(outgoing) if outgoing else None
        due = self._mark_by is not None and asyncio.get_running_loop().time() >= self._mark_by
        if not outgoing or due or len(self._published) >= self.batch:
            await self.mark_published()  # quiet (nothing to gather the marks with), due, or a batch gathered
        if failed is not None:
            self._read_at = None  # what failed is still in the table: read it on the next step
            raise failed  # the worker logs its type and tries again on its next step
        return len(outgoing)

    async def _unpublished(self) -> Sequence[Row[Any]]:
        # Core: rows read, never ORM objects. A small indexed read: on SQLite it runs on the event loop.
        left_out = [*self._published, *(event_id for event_id, _ in self._handed)]
        with small_reads():
            async with self.db.engine.connect() as connection:
                if left_out:
                    query = connection.execute(
                        _UNPUBLISHED_EXCEPT, {"batch": self.batch, "published": left_out}
                    )
                else:
                    query = connection.execute(_UNPUBLISHED, {"batch": self.batch})
                return (await query).all()

    async def _publish(self, outgoing: list[tuple[UUID, Outgoing]]) -> BaseException | None:
        """Publish ``outgoing`` (each with its event id) and remember what was published for the next mark;
        the first failure, if any."""
        outcomes = await self.bus.publish_many([message for _, message in outgoing])
        published = [
            event_id for (event_id, _), error in zip(outgoing, outcomes, strict=True) if error is None
        ]
        if published:
            self._published.extend(published)
            if self._mark_by is None:
                loop = asyncio.get_running_loop()
                self._mark_by = loop.time() + self.mark_delay
                self._mark_timer = loop.call_later(self.mark_delay, self.worker.wake)
        return next((error for error in outcomes if error is not None), None)


def _outgoing(subject: str, payload: str, event_id: UUID, headers: str) -> Outgoing:
    """An outbox row as the message the relay publishes (its event id is the ``Nats-Msg-Id``)."""
    return Outgoing(subject, payload.encode(), str(event_id), jsontext.loads(headers))
