"""High availability as the production overlay runs it: a 3-node JetStream cluster with the streams at
3 replicas. The stream leader is killed in the middle of a burst of referrals; the real router and the
real notify carry on against the two survivors, and every referral is routed and offered exactly once.

The test plays intake on the bus (publishing ``referral.received`` and retrying a publish that failed,
as intake's outbox relay does) and serves the router a directory snapshot over real HTTP.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.errors import Error as NatsError
from sqlalchemy import func
from sqlmodel import col, select

from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from services.notify.store import Offer
from services.router.app import create_app as create_router
from services.router.store import RoutedCase, RoutingDecision
from shared.bus import DLQ_STREAM, EVENTS_STREAM, Bus
from shared.events import CaseRouted, Event, OfferMade, ReferralReceived, decode_event
from shared.outbox import OutboxMessage
from shared.service import Runtime
from tests.harness import SERVICE_CREDENTIALS, eventually, running, service_auth
from tests.integration.test_router import (  # noqa: F401 - directory: the router's stub directory fixture
    StubDirectory,
    directory,
    referral,
    router_settings,
)
from tests.nats_cluster import NatsCluster
from tests.servers import StubDirectory as NotifyDirectory
from tests.servers import serving

REFERRALS = 40
KILL_AFTER = 15


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    nats = NatsCluster(tmp_path / "cluster")
    try:
        nats.start()
        yield nats
    finally:
        nats.stop()


async def publish_until_stored(bus: Bus, event: Event) -> None:
    """Publish, retrying through a leader election: the same ``Nats-Msg-Id`` makes a retry harmless."""
    for _ in range(200):
        try:
            await bus.publish(event)
            return
        except Exception:  # noqa: BLE001 - timeouts, no responders, reconnecting: all mean "try again"
            await asyncio.sleep(0.1)
    raise AssertionError(f"event {event.event_id} never stored")


async def stream_events(bus: Bus, subject: str) -> list[Event]:
    """Every message on a subject in the stream, duplicates included (read with an ephemeral consumer).

    Just after an election a new consumer's first fetch can be refused (503: its own leader is still being
    chosen); the read then starts again from the beginning with a fresh consumer, so nothing is counted twice.
    """
    for _ in range(10):
        try:
            return await _read_subject(bus, subject)
        except NatsError:
            await asyncio.sleep(0.5)
    return await _read_subject(bus, subject)


async def _read_subject(bus: Bus, subject: str) -> list[Event]:
    info = await bus.js.stream_info(EVENTS_STREAM, subjects_filter=subject)
    stored = sum((info.state.subjects or {}).values())
    sub = await bus.js.pull_subscribe(subject, durable=None, stream=EVENTS_STREAM)
    found: list[Event] = []
    try:
        while len(found) < stored:
            for msg in await sub.fetch(min(100, stored - len(found)), timeout=5):
                found.append(decode_event(msg.subject, msg.data))
                await msg.ack()
    finally:
        await sub.unsubscribe()
    return found


async def count(runtime: Runtime, statement: Any) -> int:
    async with runtime.db.session() as session:
        return int((await session.exec(statement)).one())


async def settled(bus: Bus, runtimes: list[Runtime], durables: list[str]) -> bool:
    """Nothing left anywhere: every consumer has processed and acked all, every outbox is published."""
    for durable in durables:
        try:
            info = await bus.js.consumer_info(EVENTS_STREAM, durable)
        except NatsError:
            # The cluster is still settling after the election (a consumer's own leader being chosen):
            # JetStream's API times out or is unavailable meanwhile. Not settled yet; ask again.
            return False
        if info.num_pending or info.num_ack_pending:
            return False
    for runtime in runtimes:
        unpublished = select(func.count()).select_from(OutboxMessage).where(col(OutboxMessage.published_at).is_(None))
        if await count(runtime, unpublished):
            return False
    return True


async def test_killing_the_stream_leader_mid_burst_loses_and_repeats_nothing(
    cluster: NatsCluster, directory: StubDirectory, tmp_path: Path
) -> None:
    notify_directory = NotifyDirectory(service_credentials=SERVICE_CREDENTIALS)
    router = create_router(router_settings(cluster, f"sqlite+aiosqlite:///{tmp_path / 'router.db'}", directory,
                                           nats_stream_replicas=3))
    async with serving(notify_directory.app()) as directory_server, running(router):
        notify = create_notify(NotifySettings(
            nats_url=cluster.url, nats_stream_replicas=3, database_url=f"sqlite+aiosqlite:///{tmp_path / 'notify.db'}",
            **service_auth("notify"), directory_url=directory_server.url, intake_url=directory_server.url,
            environment="development", webhook_poll_seconds=0.05, sla_check_seconds=3600,
        ))
        async with running(notify):
            intake = Bus(cluster.url, name="test-intake")
            await intake.start()
            await intake.wait_ready(15)
            try:
                before = await intake.js.stream_info(EVENTS_STREAM)
                assert before.config.num_replicas == 3 and len(before.cluster.replicas) == 2
                assert (await intake.js.stream_info(DLQ_STREAM)).config.num_replicas == 3

                cases = [referral() for _ in range(REFERRALS)]
                for case in cases[:KILL_AFTER]:
                    await publish_until_stored(intake, case)
                leader = before.cluster.leader
                cluster.kill(leader)
                for case in cases[KILL_AFTER:]:
                    await publish_until_stored(intake, case)

                notify_rt: Runtime = notify.state.runtime
                router_rt: Runtime = router.state.runtime
                offered_cases = select(func.count(func.distinct(Offer.case_id)))
                await eventually(lambda: _equals(count(notify_rt, offered_cases), REFERRALS), timeout=45)
                await eventually(lambda: settled(intake, [router_rt, notify_rt], [
                    "router-referrals", "router-offers", "notify-case-routed", "notify-referrals"]), timeout=30)

                after = await intake.js.stream_info(EVENTS_STREAM)
                assert after.cluster.leader != leader  # a survivor took over the stream

                # The stream stored each referral once, despite the publisher's retries across the election.
                received = await stream_events(intake, ReferralReceived.subject)
                assert sorted(str(e.case_id) for e in received) == sorted(str(c.case_id) for c in cases)

                # Routed once: one decision per case in the router, one case.routed per case on the bus.
                ids = {c.case_id for c in cases}
                assert await count(router_rt, select(func.count()).select_from(RoutedCase)) == REFERRALS
                initial = select(func.count()).select_from(RoutingDecision).where(RoutingDecision.kind == "initial")
                assert await count(router_rt, initial) == REFERRALS
                routed = [e for e in await stream_events(intake, CaseRouted.subject) if isinstance(e, CaseRouted)]
                assert Counter(e.case_id for e in routed) == Counter({case_id: 1 for case_id in ids})

                # Offered once: exactly the services each decision named, one offer each, announced once.
                async with notify_rt.db.session() as session:
                    offers = list((await session.exec(select(Offer))).all())
                made = Counter((o.case_id, o.service_id) for o in offers)
                expected = Counter((e.case_id, s.service_id) for e in routed for s in e.offer_to)
                assert made == expected and set(made.values()) == {1}
                announced = [e for e in await stream_events(intake, OfferMade.subject) if isinstance(e, OfferMade)]
                assert Counter(e.offer_id for e in announced) == Counter({o.id: 1 for o in offers})
            finally:
                await intake.close()


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected
