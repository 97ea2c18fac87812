"""Signed webhooks to a real local receiver that verifies them with ``standardwebhooks``: thin payloads,
secret rotation, retries through a receiver outage and a notify restart with no event lost, and an
endpoint disabled (with ops told) once it fails past the retry period or is not HTTPS; a new offer's webhook
handed to the dispatcher at its commit, and not lost when the process stops before sending it."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import event
from sqlmodel import select

from services.launcher import NatsServer
from services.notify import webhook_handover
from services.notify.domain import WebhookEvent
from services.notify.offers import webhook_row
from services.notify.store import Escalation, WebhookDelivery, WebhookEndpointState, WebhookStatus
from services.notify.webhook_handover import lease_for_handover
from services.notify.webhooks import WebhookDispatcher
from shared.events import utcnow
from tests.harness import eventually
from tests.integration.notify_world import OPS, World, offer_for, provider, withdrawal, world_for
from tests.servers import LocalServer, WebhookReceiver


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@pytest.fixture
async def world(
    nats_server: NatsServer, database_url: str, tmp_path: Path, encryption_keys: str
) -> AsyncIterator[World]:
    async with world_for(nats_server.url, database_url, tmp_path, encryption_keys) as w:
        yield w


async def deliveries(app, organisation_id: str = "org-hooked") -> list[WebhookDelivery]:
    async with app.state.runtime.db.session() as session:
        return list(
            (
                await session.exec(
                    select(WebhookDelivery).where(WebhookDelivery.organisation_id == organisation_id)
                )
            ).all()
        )


async def test_offer_webhook_is_signed_thin_and_verifies_during_secret_rotation(world: World):
    old, new = new_secret(), new_secret()
    receiver = WebhookReceiver(new)  # the receiver already moved to the new secret
    async with LocalServerContext(receiver) as endpoint, world.notify() as notify:
        world.directory.deliveries["org-hooked"] = {
            "channel": "webhook",
            "webhook_url": f"{endpoint.url}/hooks",
            "signing_secrets": [old, new],
        }
        case_id = await world.refer(identifier="hook-thin")
        await world.route(case_id, "hooked")
        offer = await offer_for(notify, "key-hooked", case_id)

        async def received() -> bool:
            return bool(receiver.received)

        await eventually(received)
        [hook] = receiver.received
        assert receiver.rejected == 0
        assert hook["payload"]["type"] == "offer.made"
        assert hook["payload"]["data"]["offer_id"] == offer["id"]
        assert hook["payload"]["data"]["links"]["offer"].endswith(f"/offers/{offer['id']}")
        # Thin: nothing about the survivor or even the case, just where to read with the API key.
        assert set(hook["payload"]) == {"type", "timestamp", "data"} and set(hook["payload"]["data"]) == {
            "offer_id",
            "links",
        }
        assert str(case_id) not in hook["raw"].decode()

        async def recorded() -> bool:  # the receiver answers before notify commits what it heard
            return [(r.id, r.status) for r in await deliveries(notify.app)] == [
                (hook["id"], WebhookStatus.delivered)
            ]

        await eventually(recorded)
        # A provider on polling gets no webhook at all.
        await world.route(case_id, "outreach")
        await offer_for(notify, "key-outreach", case_id)

        async def settled() -> bool:
            rows = await deliveries(notify.app, "org-outreach")
            return bool(rows) and rows[0].status == WebhookStatus.not_applicable

        await eventually(settled)


class LocalServerContext:
    """The receiver on a real port for the length of a block."""

    def __init__(self, receiver: WebhookReceiver, port: int | None = None) -> None:
        self.server = LocalServer(receiver.app(), port)

    async def __aenter__(self) -> LocalServer:
        await self.server.start()
        return self.server

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()


async def test_webhooks_survive_a_receiver_outage_and_a_notify_restart_without_loss(world: World):
    secret = new_secret()
    receiver = WebhookReceiver(secret)
    endpoint = LocalServer(receiver.app())  # down: nothing listens on its port yet
    world.directory.deliveries["org-hooked"] = {
        "channel": "webhook",
        "webhook_url": f"{endpoint.url}/hooks",
        "signing_secrets": [secret],
    }
    cases = []
    async with world.notify() as notify:
        for i in range(3):
            cases.append(await world.refer(identifier=f"outage-{i}"))
            await world.route(cases[-1], "hooked")
        for case_id in cases:
            await offer_for(notify, "key-hooked", case_id)

        async def retried() -> bool:
            rows = await deliveries(notify.app)
            return len(rows) == 3 and all(r.attempts >= 2 and r.status == WebhookStatus.pending for r in rows)

        await eventually(retried, timeout=60)
        ids_before = sorted(r.id for r in await deliveries(notify.app))
    # Notify stops while deliveries are still pending; the receiver comes back; a new notify starts.
    await endpoint.start()
    try:
        async with world.notify() as notify:

            async def delivered() -> bool:
                rows = await deliveries(notify.app)
                return all(r.status == WebhookStatus.delivered for r in rows)

            await eventually(delivered, timeout=60)
            # Each event arrived, verified, under the webhook-id it had from the start.
            assert sorted(receiver.ids()) == ids_before and receiver.rejected == 0
            assert receiver.types() == ["offer.made"] * 3
            # The failures before the restart are on record.
            assert all(
                r.attempts >= 3 and r.last_error == "ConnectError" for r in await deliveries(notify.app)
            )
    finally:
        await endpoint.stop()


async def test_endpoint_failing_past_the_retry_period_is_disabled_and_ops_is_told(world: World):
    receiver = WebhookReceiver(new_secret())
    endpoint = LocalServer(receiver.app())  # never started
    world.directory.deliveries["org-hooked"] = {
        "channel": "webhook",
        "webhook_url": f"{endpoint.url}/hooks",
        "signing_secrets": [new_secret()],
    }
    async with world.notify(webhook_retry_hours=0.0) as notify:
        case_id = await world.refer(identifier="disabled")
        await world.route(case_id, "hooked")
        offer = await offer_for(notify, "key-hooked", case_id)

        async def escalated() -> bool:
            async with notify.app.state.runtime.db.session() as session:
                return (
                    await session.exec(select(Escalation).where(Escalation.case_id == case_id))
                ).first() is not None

        await eventually(escalated)
        [row] = await deliveries(notify.app)
        assert row.status == WebhookStatus.failed and row.attempts == 1
        endpoints = (await notify.get("/ops/webhook-endpoints", headers=OPS)).json()
        assert [e["organisation_id"] for e in endpoints] == ["org-hooked"]
        assert "failing for 0 h" in endpoints[0]["disabled_reason"]
        # Nothing is lost for the provider: the offer is still there by polling.
        assert (await notify.get(f"/offers/{offer['id']}", headers=provider("key-hooked"))).status_code == 200
        enabled = await notify.post("/ops/webhook-endpoints/org-hooked/enable", headers=OPS)
        assert enabled.status_code == 200 and enabled.json()["disabled_at"] is None


async def test_endpoints_must_be_https_outside_development(world: World):
    receiver = WebhookReceiver(new_secret())
    async with LocalServerContext(receiver) as endpoint, world.notify(environment="production") as notify:
        world.directory.deliveries["org-hooked"] = {
            "channel": "webhook",
            "webhook_url": f"{endpoint.url}/hooks",
            "signing_secrets": [new_secret()],
        }
        case_id = await world.refer(identifier="plain-http")
        await world.route(case_id, "hooked")

        async def refused() -> bool:
            rows = await deliveries(notify.app)
            return bool(rows) and rows[0].status == WebhookStatus.failed

        await eventually(refused)
        assert receiver.received == [] and receiver.rejected == 0
        endpoints = (await notify.get("/ops/webhook-endpoints", headers=OPS)).json()
        assert endpoints[0]["disabled_reason"] == "endpoint must use HTTPS"


async def test_provider_holding_the_handoff_is_told_by_webhook_to_stop_when_consent_is_withdrawn(
    world: World,
):
    secret = new_secret()
    receiver = WebhookReceiver(secret)
    async with LocalServerContext(receiver) as endpoint, world.notify() as notify:
        world.directory.deliveries["org-hooked"] = {
            "channel": "webhook",
            "webhook_url": f"{endpoint.url}/hooks",
            "signing_secrets": [secret],
        }
        case_id = await world.refer(identifier="hook-stop")
        await world.route(case_id, "hooked")
        offer = await offer_for(notify, "key-hooked", case_id)
        assert (
            await notify.post(f"/offers/{offer['id']}/accept", headers=provider("key-hooked"))
        ).status_code == 200
        assert (
            await notify.get(f"/offers/{offer['id']}/handoff", headers=provider("key-hooked"))
        ).status_code == 200

        assert (await world.update_consent(case_id, withdrawal())).status_code == 200

        async def told() -> bool:
            return sorted(receiver.types()) == ["offer.contact-stop", "offer.made"]

        await eventually(told)
        assert receiver.rejected == 0
        stop = receiver.received[-1]["payload"]["data"]
        assert stop["offer_id"] == offer["id"] and stop["links"]["handoff"].endswith(
            f"/offers/{offer['id']}/handoff"
        )
        assert (
            await notify.get(f"/offers/{offer['id']}/handoff", headers=provider("key-hooked"))
        ).status_code == 410


async def test_a_webhook_host_that_now_resolves_to_a_private_address_is_never_called(
    world: World, monkeypatch
):
    """DNS rebinding: the name was public when ops registered it and now resolves inside the network.
    Notify checks the address at the connection itself, sends nothing, disables the endpoint and tells ops."""

    async def rebound(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    monkeypatch.setattr("shared.egress.resolve", rebound)
    async with world.notify(environment="production") as notify:
        world.directory.deliveries["org-hooked"] = {
            "channel": "webhook",
            "webhook_url": "https://hooks.provider.example/pathways",
            "signing_secrets": [new_secret()],
        }
        case_id = await world.refer(identifier="rebound")
        await world.route(case_id, "hooked")

        async def refused() -> bool:
            rows = await deliveries(notify.app)
            return bool(rows) and rows[0].status == WebhookStatus.failed

        await eventually(refused)
        endpoints = (await notify.get("/ops/webhook-endpoints", headers=OPS)).json()
        reason = endpoints[0]["disabled_reason"]
        assert "private address" in reason and "10.0.0.7" not in reason


async def test_polling_provider_needs_no_delivery_but_a_disabled_endpoint_still_records_the_failure(
    world: World,
):
    """The dispatcher closes a polling provider's first webhook as not applicable (its directory look-up fills
    the delivery settings cache); offers made while that answer is fresh have it closed when they are made, with
    no directory call from the consumer. An organisation whose endpoint ops disabled keeps the dispatcher's answer."""
    async with world.notify(delivery_cache_seconds=3600) as notify:
        asked: list[str] = []
        http = notify.app.state.runtime.http
        original = http.get

        async def counting_get(url: str, **kwargs: Any) -> httpx.Response:
            if url.endswith("/org-outreach/delivery"):
                asked.append(url)
            return await original(url, **kwargs)

        http.get = counting_get  # type: ignore[method-assign]
        first = await world.refer(identifier="polls-first")
        await world.route(first, "outreach")
        await offer_for(notify, "key-outreach", first)

        async def settled() -> bool:
            rows = await deliveries(notify.app, "org-outreach")
            return bool(rows) and rows[0].status == WebhookStatus.not_applicable

        await eventually(settled)
        assert len(asked) == 1
        known = await world.refer(identifier="polls-known")
        await world.route(known, "outreach")
        await offer_for(notify, "key-outreach", known)
        [row] = [r for r in await deliveries(notify.app, "org-outreach") if r.case_id == known]
        assert row.status == WebhookStatus.not_applicable and row.attempts == 0
        assert len(asked) == 1

        async with notify.app.state.runtime.db.transaction() as session:
            session.add(
                WebhookEndpointState(
                    organisation_id="org-outreach", disabled_at=utcnow(), disabled_reason="failing for 24 h"
                )
            )
        disabled = await world.refer(identifier="polls-disabled")
        await world.route(disabled, "outreach")
        await offer_for(notify, "key-outreach", disabled)

        async def failed() -> bool:
            rows = [r for r in await deliveries(notify.app, "org-outreach") if r.case_id == disabled]
            return bool(rows) and rows[0].status == WebhookStatus.failed

        await eventually(failed)
        [row] = [r for r in await deliveries(notify.app, "org-outreach") if r.case_id == disabled]
        assert row.last_error == "endpoint disabled"


class HeldReceiver(WebhookReceiver):
    """An endpoint that takes its time: it hears each webhook at once but answers only when released."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret)
        self.heard = 0
        self.release = asyncio.Event()

    def app(self) -> FastAPI:
        inner = super().app()
        app = FastAPI()

        @app.post("/hooks")
        async def hook(request: Request) -> Response:
            self.heard += 1
            await self.release.wait()
            return await inner.router.routes[-1].endpoint(request)  # type: ignore[attr-defined]

        return app


async def test_a_slow_endpoint_does_not_hold_other_providers_webhooks_behind_it(world: World):
    """Deliveries go out side by side (NOTIFY_WEBHOOK_CONCURRENCY): while one provider's endpoint has not
    answered, another provider's offer still reaches its own endpoint; the slow one is delivered once it
    answers."""
    slow_secret, fast_secret = new_secret(), new_secret()
    slow, fast = HeldReceiver(slow_secret), WebhookReceiver(fast_secret)
    async with (
        LocalServerContext(slow) as slow_endpoint,
        LocalServerContext(fast) as fast_endpoint,
        world.notify(webhook_timeout_seconds=60) as notify,  # the slow POST stays open for the whole test
    ):
        world.directory.deliveries["org-outreach"] = {
            "channel": "webhook", "webhook_url": f"{slow_endpoint.url}/hooks", "signing_secrets": [slow_secret],
        }
        world.directory.deliveries["org-hooked"] = {
            "channel": "webhook", "webhook_url": f"{fast_endpoint.url}/hooks", "signing_secrets": [fast_secret],
        }
        first = await world.refer(identifier="hook-slow")
        await world.route(first, "outreach")

        async def slow_heard() -> bool:
            return slow.heard >= 1

        await eventually(slow_heard)
        second = await world.refer(identifier="hook-fast")
        await world.route(second, "hooked")
        offer = await offer_for(notify, "key-hooked", second)

        async def fast_received() -> bool:
            return any(r["payload"]["data"]["offer_id"] == offer["id"] for r in fast.received)

        await eventually(fast_received)  # the slow endpoint is still holding its request
        assert not slow.received
        slow.release.set()

        async def slow_delivered() -> bool:
            rows = await deliveries(notify.app, "org-outreach")
            return bool(rows) and all(r.status == WebhookStatus.delivered for r in rows)

        await eventually(slow_delivered)
        assert slow.rejected == fast.rejected == 0


async def test_no_more_deliveries_are_leased_than_can_be_sent_and_the_rest_go_when_a_slot_frees(world: World):
    """With every sending slot taken, a due delivery stays pending and un-leased (another notify instance
    could take it meanwhile; a lease would only run out while it waited here), and it is sent as soon as
    a slot frees, without waiting for the next poll; each delivery reaches the receiver exactly once."""
    secret = new_secret()
    receiver = HeldReceiver(secret)
    async with (
        LocalServerContext(receiver) as endpoint,
        world.notify(webhook_timeout_seconds=60, webhook_concurrency=1, webhook_poll_seconds=3600) as notify,
    ):
        world.directory.deliveries["org-outreach"] = {
            "channel": "webhook", "webhook_url": f"{endpoint.url}/hooks", "signing_secrets": [secret],
        }
        first = await world.refer(identifier="slot-first")
        await world.route(first, "outreach")

        async def heard(count: int) -> bool:
            return receiver.heard >= count

        await eventually(lambda: heard(1))
        second = await world.refer(identifier="slot-second")
        await world.route(second, "outreach")

        async def second_queued() -> list[WebhookDelivery]:
            return [r for r in await deliveries(notify.app, "org-outreach") if r.case_id == second]

        await eventually(second_queued)
        await asyncio.sleep(0.3)  # a dispatcher step would have leased it by now, had it a free slot
        [waiting] = await second_queued()
        assert waiting.status == WebhookStatus.pending and waiting.attempts == 0
        assert waiting.next_attempt_at <= utcnow(), "leased while no slot could send it"
        assert receiver.heard == 1

        receiver.release.set()  # the first answers; its slot frees and the second goes at once

        async def both_delivered() -> bool:
            rows = await deliveries(notify.app, "org-outreach")
            return len(rows) == 2 and all(r.status == WebhookStatus.delivered for r in rows)

        await eventually(both_delivered)
        assert len(receiver.received) == 2 and receiver.rejected == 0
        assert len({r["id"] for r in receiver.received}) == 2


async def _non_empty(rows: Awaitable[list[Any]]) -> bool:
    return bool(await rows)


def dispatcher_of(app: FastAPI) -> WebhookDispatcher:
    return webhook_handover._TAKERS[app.state.runtime.db.engine.sync_engine]  # type: ignore[return-value]


async def test_a_new_offers_webhook_goes_at_its_commit_without_a_dispatcher_step(world: World):
    """The transaction that makes an offer leases its webhook and hands it to the dispatcher as it commits: no
    step reads and leases it first (issue 9). An endpoint ops disabled gets nothing handed over: the step,
    woken by that commit, records the failure as before."""
    secret = new_secret()
    receiver = WebhookReceiver(secret)
    async with LocalServerContext(receiver) as endpoint, world.notify(webhook_poll_seconds=3600) as notify:
        world.directory.deliveries["org-hooked"] = {
            "channel": "webhook", "webhook_url": f"{endpoint.url}/hooks", "signing_secrets": [secret],
        }
        dispatcher = dispatcher_of(notify.app)
        case_id = await world.refer(identifier="handed")
        await world.route(case_id, "hooked")

        async def delivered() -> bool:
            rows = await deliveries(notify.app)
            return [(r.status, r.attempts) for r in rows] == [(WebhookStatus.delivered, 1)]

        await eventually(delivered)
        [row] = await deliveries(notify.app)
        # Leased as it was made (a step's lease would run from the step's later clock): no step ever saw it
        # due, and it was sent all the same.
        assert row.next_attempt_at == row.created_at + dispatcher.lease
        assert len(receiver.received) == 1 and receiver.rejected == 0
        assert dispatcher.room() == notify.app.state.runtime.settings.webhook_concurrency

        async with notify.app.state.runtime.db.transaction() as session:
            session.add(
                WebhookEndpointState(organisation_id="org-hooked", disabled_at=utcnow(), disabled_reason="x")
            )
        disabled = await world.refer(identifier="handed-disabled")
        await world.route(disabled, "hooked")

        async def failed() -> bool:
            rows = [r for r in await deliveries(notify.app) if r.case_id == disabled]
            return [(r.status, r.last_error) for r in rows] == [(WebhookStatus.failed, "endpoint disabled")]

        await eventually(failed)  # by the step, woken by the commit that queued it
        assert len(receiver.received) == 1


async def test_a_handed_over_delivery_lost_with_its_process_is_sent_once_its_lease_runs_out(world: World):
    """Should notify stop between the commit and the POST, the delivery stays leased, not lost: once the lease
    runs out the step sends it, once."""
    secret = new_secret()
    receiver = WebhookReceiver(secret)
    async with (
        LocalServerContext(receiver) as endpoint,
        world.notify(webhook_timeout_seconds=1.0, webhook_poll_seconds=0.1) as notify,
    ):
        world.directory.deliveries["org-hooked"] = {
            "channel": "webhook", "webhook_url": f"{endpoint.url}/hooks", "signing_secrets": [secret],
        }
        dispatcher = dispatcher_of(notify.app)
        taken = dispatcher.take
        lost: list[dict[str, Any]] = []

        def die_before_sending(rows: list[dict[str, Any]]) -> None:
            lost.extend(rows)
            taken([])  # the promise is settled; the rows themselves go nowhere, as with a process gone

        dispatcher.take = die_before_sending  # type: ignore[method-assign]
        case_id = await world.refer(identifier="handed-lost")
        await world.route(case_id, "hooked")

        async def leased() -> list[WebhookDelivery]:
            return [r for r in await deliveries(notify.app) if r.case_id == case_id]

        await eventually(lambda: _non_empty(leased()))
        [row] = await leased()
        assert [r["id"] for r in lost] == [row.id]
        assert row.status == WebhookStatus.pending and row.attempts == 0 and row.next_attempt_at > utcnow()

        async def delivered() -> bool:
            return [r.status for r in await leased()] == [WebhookStatus.delivered]

        await eventually(delivered, timeout=30)
        assert receiver.ids() == [row.id] and receiver.rejected == 0


async def test_a_rolled_back_transaction_hands_nothing_over_and_frees_its_slots(world: World):
    async with world.notify(webhook_poll_seconds=3600) as notify:
        db = notify.app.state.runtime.db
        dispatcher = dispatcher_of(notify.app)
        free = dispatcher.room()
        row = webhook_row(
            notify.app.state.runtime.settings,
            offer_id=uuid4(),
            organisation_id="org-hooked",
            case_id=uuid4(),
            event=WebhookEvent.offer_made,
            source="made",
            now=utcnow(),
        )
        with pytest.raises(RuntimeError):
            async with db.transaction() as session:
                assert lease_for_handover(session, [row], utcnow()) == 1
                assert dispatcher.room() == free - 1
                raise RuntimeError("the offer's transaction fails")
        assert dispatcher.room() == free and not dispatcher._in_flight
        assert await deliveries(notify.app) == []


async def _leased_deliveries(app: FastAPI, count: int) -> list[WebhookDelivery]:
    """``count`` pending deliveries, leased as a step would lease them before sending."""
    dispatcher = dispatcher_of(app)
    now = utcnow()
    rows = [
        webhook_row(
            app.state.runtime.settings, offer_id=uuid4(), organisation_id="org-hooked", case_id=uuid4(),
            event=WebhookEvent.offer_made, source="made", now=now,
        ) | {"next_attempt_at": now + dispatcher.lease}
        for _ in range(count)
    ]
    async with app.state.runtime.db.transaction() as session:
        session.add_all(WebhookDelivery(**row) for row in rows)
    return [WebhookDelivery(**row) for row in rows]


async def test_webhooks_delivered_together_are_recorded_in_one_write(world: World):
    """A delivered attempt's outcome waits a moment for the others of that moment: one transaction for the
    lot, not one each (issue 9). Each row is recorded as delivered, once attempted, when it was delivered."""
    async with world.notify(webhook_poll_seconds=3600) as notify:
        dispatcher = dispatcher_of(notify.app)
        leased = await _leased_deliveries(notify.app, 3)
        writes: list[int] = []

        def count(_conn, _cursor, statement, parameters, _context, executemany) -> None:
            if statement.lstrip().upper().startswith("UPDATE WEBHOOK_DELIVERY") and "delivered_at" in statement:
                writes.append(len(parameters) if executemany else 1)

        engine = notify.app.state.runtime.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            at = utcnow()
            for delivery in leased:
                dispatcher._record_delivered(delivery, at)  # as three attempts ending together

            async def recorded() -> bool:
                rows = await deliveries(notify.app)
                return all(r.status == WebhookStatus.delivered for r in rows)

            await eventually(recorded)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert writes == [3]
        for row in await deliveries(notify.app):
            assert (row.attempts, row.delivered_at, row.last_attempt_at) == (1, at, at)


async def test_a_delivered_outcome_not_yet_written_is_written_as_notify_stops(world: World):
    async with world.notify(webhook_poll_seconds=3600) as notify:
        [delivery] = await _leased_deliveries(notify.app, 1)
        dispatcher_of(notify.app)._record_delivered(delivery, utcnow())  # then notify stops at once
    async with world.notify(webhook_poll_seconds=3600) as notify:
        assert [(r.id, r.status, r.attempts) for r in await deliveries(notify.app)] == [
            (delivery.id, WebhookStatus.delivered, 1)
        ]
