"""Nothing is lost when NATS is away: intake still answers, and publishes once NATS is back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlmodel import col, select, update

from services.intake.app import SAMPLE_CLIENT, create_app
from services.intake.settings import IntakeSettings
from services.launcher import NatsServer, free_port
from shared.bus import EVENTS_STREAM, Bus
from shared.db import Database
from shared.events import DirectoryChanged
from shared.outbox import OutboxMessage, OutboxRelay, enqueue, outbox_message
from tests.conftest import EXAMPLES
from tests.harness import eventually, running, service_auth

EHR = {"Authorization": f"Bearer {SAMPLE_CLIENT['api_key']}", "Content-Type": "application/fhir+json"}


async def test_referral_accepted_while_nats_is_down_is_published_when_it_returns(
    tmp_path: Path, database_url: str, encryption_keys: str
):
    server = NatsServer(tmp_path / "nats", port=free_port())  # not started yet
    app = create_app(
        IntakeSettings(
            nats_url=server.url, database_url=database_url, **service_auth("intake"),
            encryption_keys=encryption_keys, active_key_id="k1", seed_sample_client=True,
        )
    )
    async with running(app, wait_for_bus=False) as intake:
        response = await intake.post("/fhir/Bundle", json=json.loads((EXAMPLES / "gp-referral.json").read_text()),
                                     headers=EHR)
        assert response.status_code == 202
        ready = await intake.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["bus"] is False

        async def unpublished() -> list[OutboxMessage]:
            async with app.state.runtime.db.session() as session:
                return list(
                    (await session.exec(select(OutboxMessage).where(col(OutboxMessage.published_at).is_(None)))).all()
                )

        assert len(await unpublished()) == 1

        server.start()
        try:
            async def drained() -> bool:
                return not await unpublished()

            await eventually(drained, timeout=30)
            probe = Bus(server.url, name="probe")
            await probe.start()
            await probe.wait_ready(10)
            assert (await probe.js.stream_info(EVENTS_STREAM)).state.messages == 1
            await probe.close()
        finally:
            server.stop()


async def test_referral_accepted_while_nats_is_stopped_is_published_once_it_restarts(
    tmp_path: Path, database_url: str, encryption_keys: str
):
    server = NatsServer(tmp_path / "nats", port=free_port())
    server.start()
    app = create_app(
        IntakeSettings(
            nats_url=server.url, database_url=database_url, **service_auth("intake"),
            encryption_keys=encryption_keys, active_key_id="k1", seed_sample_client=True,
        )
    )

    async def unpublished() -> int:
        async with app.state.runtime.db.session() as session:
            return len((await session.exec(select(OutboxMessage).where(col(OutboxMessage.published_at).is_(None)))).all())

    async def drained() -> bool:
        return await unpublished() == 0

    try:
        async with running(app) as intake:
            first = json.loads((EXAMPLES / "gp-referral.json").read_text())
            assert (await intake.post("/fhir/Bundle", json=first, headers=EHR)).status_code == 202
            await eventually(drained)

            server.stop()  # the broker goes away mid-service (same port and store when it returns)
            message = json.loads((EXAMPLES / "ed-high-risk-message.json").read_text())
            response = await intake.post("/fhir/$process-message", json=message, headers=EHR)
            assert response.status_code == 202
            assert await unpublished() == 1

            server.start()
            await eventually(drained, timeout=30)
            probe = Bus(server.url, name="probe")
            await probe.start()
            await probe.wait_ready(10)
            try:
                # Both referrals, each once: the relay's Nats-Msg-Id makes a re-send after a lost ack harmless.
                assert (await probe.js.stream_info(EVENTS_STREAM)).state.messages == 2
            finally:
                await probe.close()
    finally:
        server.stop()


@asynccontextmanager
async def relay_setting(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[Database, Bus]]:
    """A NATS server, a database with an outbox and a bus, for a relay under test."""
    server = NatsServer(tmp_path / "nats", port=free_port())
    server.start()
    db = Database(database_url, [])
    await db.create_all()
    bus = Bus(server.url, name="relay-test")
    await bus.start()
    await bus.wait_ready(10)
    try:
        yield db, bus
    finally:
        await bus.close()
        await db.dispose()
        server.stop()


async def add(db: Database, n: int) -> None:
    async with db.transaction() as session:
        enqueue(session, DirectoryChanged(entity="organisation", entity_id=f"org-{n}", change="updated"))


async def unmarked(db: Database) -> int:
    async with db.session() as session:
        rows = await session.exec(select(OutboxMessage).where(col(OutboxMessage.published_at).is_(None)))
        return len(rows.all())


async def stored(bus: Bus) -> int:
    return (await bus.js.stream_info(EVENTS_STREAM)).state.messages


async def test_published_rows_are_marked_together_and_never_published_twice_meanwhile(
    tmp_path: Path, database_url: str
):
    """The relay marks what it published in one write for many publishes (issue 9), leaves those rows out
    of its reads until then, and a crash before the mark (the marks lost) republishes them under the same
    message ids, which JetStream stores once."""
    async with relay_setting(tmp_path, database_url) as (db, bus):
        relay = OutboxRelay(db, bus, mark_delay=3600)  # marks only once quiet (or a batch gathers, or at stop)
        await add(db, 1)
        await add(db, 2)
        assert await relay.publish_pending() == 2
        assert await stored(bus) == 2 and await unmarked(db) == 2  # published, the mark still to come
        await add(db, 3)
        assert await relay.publish_pending() == 1  # only the new one: the published ones are left out
        assert await stored(bus) == 3 and await unmarked(db) == 3
        assert await relay.publish_pending() == 0  # quiet: the three marks written together
        assert await unmarked(db) == 0

        async with db.transaction() as session:  # a crash before the marks: none of them written
            await session.exec(update(OutboxMessage).values(published_at=None))  # type: ignore[call-overload]
        restarted = OutboxRelay(db, bus)
        assert await restarted.publish_pending() == 3
        assert await stored(bus) == 3  # the same Nats-Msg-Id: JetStream kept each event once
        await restarted.stop()  # what it published is marked at stop
        assert await unmarked(db) == 0

        # Marks that fall due are written after the step's publish: a new event never waits for them.
        soon = OutboxRelay(db, bus, mark_delay=0.05)
        await add(db, 4)
        assert await soon.publish_pending() == 1
        await asyncio.sleep(0.1)  # its mark is due now
        await add(db, 5)
        marking = soon.mark_published
        stored_when_marking: list[int] = []

        async def watched() -> None:
            stored_when_marking.append(await stored(bus))
            await marking()

        soon.mark_published = watched  # type: ignore[method-assign]
        assert await soon.publish_pending() == 1
        assert stored_when_marking == [5]  # the new event was in the stream before the due marks were written
        assert await unmarked(db) == 0  # both marked, in that one write


async def test_a_commits_events_are_handed_to_the_relay_and_published_without_reading_them_back(
    tmp_path: Path, database_url: str
):
    """Issue 9: a commit hands its outbox rows to the relay, which publishes them as they were inserted;
    it reads the table only at start, every ``poll_interval`` and when a commit cannot say which rows it
    wrote (an ORM object), so nothing is left behind and nothing is published twice."""
    async with relay_setting(tmp_path, database_url) as (db, bus):
        await add(db, 0)  # before the relay exists: found by its first read
        relay = OutboxRelay(db, bus, poll_interval=3600)
        reads: list[int] = []
        read = relay._unpublished

        async def counted() -> object:
            rows = await read()
            reads.append(len(rows))
            return rows

        relay._unpublished = counted  # type: ignore[method-assign]

        async def published(count: int, reads_then: list[int]) -> None:
            async def done() -> bool:
                return await stored(bus) == count and await unmarked(db) == 0

            await eventually(done, timeout=10)
            assert reads == reads_then

        relay.start()
        try:
            await published(1, [1])
            for n in range(1, 6):
                await add(db, n)
            await published(6, [1])  # the start's read only: the five later events were handed over

            async with db.transaction() as session:  # an ORM object: the relay must read the table for it
                _, values = outbox_message(DirectoryChanged(entity="organisation", entity_id="org-6",
                                                            change="updated"))
                session.add(OutboxMessage(**values))
            await published(7, [1, 1])
        finally:
            await relay.stop()
