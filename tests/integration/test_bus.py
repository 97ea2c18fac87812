"""The bus against a real NATS server: de-duplication, durable resumption, dead letters, replay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest
from sqlalchemy import func
from sqlmodel import Field, SQLModel, select

from services.launcher import NatsServer
from shared.bus import DLQ_STREAM, EVENTS_STREAM, Bus, Delivery
from shared.db import Database
from shared.events import CaseEscalated, Event
from tests.harness import consumer_drained, eventually


class HandledEvent(SQLModel, table=True):
    """A test side effect: one row per time a handler's work committed."""

    __tablename__ = "test_handled_event"

    id: int | None = Field(default=None, primary_key=True)
    event_id: UUID


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, [HandledEvent])
    await database.create_all()
    yield database
    await database.dispose()


async def started_bus(url: str, name: str = "test") -> Bus:
    bus = Bus(url, name=name)
    await bus.start()
    await bus.wait_ready(timeout=15)
    return bus


async def handled(db: Database) -> tuple[int, int]:
    async with db.session() as session:
        total = (await session.exec(select(func.count()).select_from(HandledEvent))).one()
        distinct = (await session.exec(select(func.count(func.distinct(HandledEvent.event_id))))).one()
    return total, distinct


def recording_handler(db: Database, consumer: str):
    async def handler(event: Event, _delivery: Delivery) -> None:
        async def work(session):
            session.add(HandledEvent(event_id=event.event_id))

        await db.run_once(consumer, event.event_id, work)

    return handler


async def test_duplicate_event_id_is_stored_once_and_handled_once(nats_server: NatsServer, db: Database):
    bus = await started_bus(nats_server.url)
    try:
        event = CaseEscalated(case_id=uuid4(), reason="test")
        await bus.publish(event)
        await bus.publish(event)  # a retried publish inside the duplicate window
        assert (await bus.js.stream_info(EVENTS_STREAM)).state.messages == 1

        # Outside the window JetStream would store it again: the consumer's inbox still drops it.
        await bus.publish_raw(event.subject, event.model_dump_json().encode(), msg_id="later-retry")
        assert (await bus.js.stream_info(EVENTS_STREAM)).state.messages == 2

        spec = bus.consume("test-dedupe", [CaseEscalated.subject], recording_handler(db, "test-dedupe"))
        await eventually(lambda: _true(spec.processed == 2))
        assert await handled(db) == (1, 1)
    finally:
        await bus.close()


async def _true(value: bool) -> bool:
    return value


async def test_durable_consumer_resumes_after_a_crash_without_losing_or_repeating(
    nats_server: NatsServer, db: Database
):
    publisher = await started_bus(nats_server.url, "publisher")
    events = [CaseEscalated(case_id=uuid4(), reason=f"case {i}") for i in range(20)]
    for event in events:
        await publisher.publish(event)

    # First consumer process: handles 8 events, then hangs on the 9th and "crashes" before acking.
    hang = asyncio.Event()
    seen = 0

    async def crashing(event: Event, delivery: Delivery) -> None:
        nonlocal seen
        seen += 1
        if seen == 9:
            await hang.wait()
        await recording_handler(db, "test-durable")(event, delivery)

    first = await started_bus(nats_server.url, "first")
    first.consume("test-durable", [CaseEscalated.subject], crashing, ack_wait=2)
    await eventually(lambda: _true(seen >= 9))
    await first.close()
    assert (await handled(db))[0] == 8

    # The restarted consumer picks up where the first left off, including the unacked 9th.
    second = await started_bus(nats_server.url, "second")
    spec = second.consume("test-durable", [CaseEscalated.subject], recording_handler(db, "test-durable"), ack_wait=2)
    try:
        await eventually(lambda: _handled_is(db, 20), timeout=30)
        # Everything acked, the hung 9th included: nothing is left to be redelivered and applied again.
        await eventually(lambda: consumer_drained(second.js, "test-durable"))
        assert await handled(db) == (20, 20)
        assert spec.processed == 12
    finally:
        await second.close()
        await publisher.close()


async def _handled_is(db: Database, count: int) -> bool:
    return (await handled(db))[0] == count


async def test_consumer_carries_on_after_the_broker_restarts(nats_server: NatsServer, db: Database):
    bus = await started_bus(nats_server.url)
    try:
        bus.consume("test-restart", [CaseEscalated.subject], recording_handler(db, "test-restart"))
        for i in range(3):
            await bus.publish(CaseEscalated(case_id=uuid4(), reason=f"before {i}"))
        await eventually(lambda: _handled_is(db, 3))

        nats_server.stop()
        nats_server.start()  # same port, same store

        async def publish_after_restart() -> bool:
            try:
                await bus.publish(CaseEscalated(case_id=uuid4(), reason="after"))
                return True
            except Exception:  # noqa: BLE001 - still reconnecting
                return False

        await eventually(publish_after_restart, timeout=30)
        await eventually(lambda: _handled_is(db, 4), timeout=30)
        assert await handled(db) == (4, 4)
    finally:
        await bus.close()


async def test_message_failing_max_deliver_times_goes_to_dead_letter_and_can_be_replayed(
    nats_server: NatsServer, db: Database
):
    bus = await started_bus(nats_server.url)
    attempts = 0
    broken = True

    async def flaky(event: Event, delivery: Delivery) -> None:
        nonlocal attempts
        attempts += 1
        if broken:
            raise RuntimeError("downstream unavailable")
        await recording_handler(db, "test-dlq")(event, delivery)

    try:
        spec = bus.consume("test-dlq", [CaseEscalated.subject], flaky, max_deliver=3, backoff=(0.05, 0.1))
        event = CaseEscalated(case_id=uuid4(), reason="poison")
        await bus.publish(event)
        await eventually(lambda: _true(spec.dead_lettered == 1))
        assert attempts == 3

        dlq = (await bus.js.stream_info(DLQ_STREAM)).state
        assert dlq.messages == 1
        message = await bus.js.get_msg(DLQ_STREAM, dlq.last_seq)
        assert message.subject == f"dlq.{CaseEscalated.subject}"
        assert message.headers["Pathways-Dlq-Consumer"] == "test-dlq"
        assert message.headers["Pathways-Dlq-Error"] == "RuntimeError"
        assert message.headers["Pathways-Dlq-Deliveries"] == "3"

        # Not redelivered on its own any more: terminated, nothing pending or awaiting an ack.
        await eventually(lambda: consumer_drained(bus.js, "test-dlq"))
        assert attempts == 3

        # Ops fixes the cause and replays: the event is handled exactly once.
        broken = False
        assert await bus.replay_dead_letters() == 1
        await eventually(lambda: _handled_is(db, 1))
        assert (await bus.js.stream_info(DLQ_STREAM)).state.messages == 0
    finally:
        await bus.close()


async def test_a_replay_takes_only_what_was_dead_lettered_when_it_began(nats_server: NatsServer, db: Database):
    """`pathways dlq replay` before the cause is fixed: the message fails again and is dead-lettered again,
    once, and waits there for the next replay instead of going round and round."""
    bus = await started_bus(nats_server.url)

    async def still_broken(event: Event, delivery: Delivery) -> None:
        raise RuntimeError("downstream still unavailable")

    try:
        spec = bus.consume("test-dlq-again", [CaseEscalated.subject], still_broken, max_deliver=2, backoff=(0.01,))
        await bus.publish(CaseEscalated(case_id=uuid4(), reason="poison"))
        await eventually(lambda: _true(spec.dead_lettered == 1))
        assert await bus.replay_dead_letters() == 1
        await eventually(lambda: _true(spec.dead_lettered == 2))
        assert (await bus.js.stream_info(DLQ_STREAM)).state.messages == 1
    finally:
        await bus.close()


async def test_unreadable_message_is_dead_lettered_at_once(nats_server: NatsServer, db: Database):
    bus = await started_bus(nats_server.url)
    try:
        spec = bus.consume("test-poison", [CaseEscalated.subject], recording_handler(db, "test-poison"))
        await bus.publish_raw(CaseEscalated.subject, b"{not json", msg_id="garbage-1")
        await eventually(lambda: _true(spec.dead_lettered == 1))
        assert await handled(db) == (0, 0)
    finally:
        await bus.close()


async def test_a_message_redelivered_past_the_limit_after_a_crash_is_dead_lettered_not_handled_again(
    nats_server: NatsServer,
):
    publisher = await started_bus(nats_server.url, "publisher")
    # The only allowed delivery starts, and the process dies inside the handler: no ack, no nak.
    started, hang = asyncio.Event(), asyncio.Event()

    async def dies_midway(_event: Event, _delivery: Delivery) -> None:
        started.set()
        await hang.wait()

    first = await started_bus(nats_server.url, "first")
    first.consume("test-limit", [CaseEscalated.subject], dies_midway, max_deliver=1, ack_wait=1)
    event = CaseEscalated(case_id=uuid4(), reason="crash")
    await publisher.publish(event)
    await eventually(lambda: _true(started.is_set()))
    await first.close()

    # The restarted consumer gets it again after ack_wait: past the limit, it goes to the dead letters
    # without the handler running a second time.
    calls = 0

    async def handler(_event: Event, _delivery: Delivery) -> None:
        nonlocal calls
        calls += 1

    second = await started_bus(nats_server.url, "second")
    spec = second.consume("test-limit", [CaseEscalated.subject], handler, max_deliver=1, ack_wait=1)
    try:
        await eventually(lambda: _true(spec.dead_lettered == 1))
        assert calls == 0
        dead = await second.js.get_msg(DLQ_STREAM, (await second.js.stream_info(DLQ_STREAM)).state.last_seq)
        assert dead.headers is not None
        assert (dead.headers["Pathways-Dlq-Consumer"], dead.headers["Pathways-Dlq-Deliveries"],
                dead.headers["Pathways-Dlq-Error"]) == ("test-limit", "2", "RuntimeError")
        await eventually(lambda: consumer_drained(second.js, "test-limit"))
    finally:
        await second.close()
        await publisher.close()
