"""The router on a real NATS server and real databases: re-offers, escalation, the directory being away,
replicas sharing one durable consumer, and the decision and explain APIs.

The test plays the other services: it publishes referrals and offer answers as intake and notify would,
and serves a directory snapshot over real HTTP (a stub, so it can be stopped and changed at will).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Self
from uuid import UUID, uuid4

import pytest
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import Response

from services.launcher import NatsServer, free_port
from services.router.app import create_app
from services.router.settings import AreaProtocol, RouterSettings
from services.router.store import _OPEN_OFFER_COUNTS, RoutedCase, open_offer_counts
from shared.bus import DLQ_STREAM, EVENTS_STREAM, Bus, Delivery
from shared.ops_users import AUTHENTICATE_PATH
from shared.directory_contract import DirectorySnapshot
from shared.events import (
    CareSetting,
    CaseEscalated,
    CaseRouted,
    CaseStatus,
    CaseSummary,
    ConsentScope,
    ConsentState,
    ConsentStatus,
    ConsentUpdated,
    DirectoryChanged,
    Event,
    OfferAccepted,
    OfferDeclined,
    OfferExpired,
    OfferMade,
    ReferralReceived,
    RiskBand,
    TaskStatus,
)
from tests.harness import as_service, consumer_drained, eventually, outbox_empty, pathways, running, service_auth
from tests.unit.router_directory import GAZETTEER, snapshot

OPS_KEY = "pw_ops_test_key"


class StubDirectory:
    """Serves ``GET /internal/snapshot`` (and the gazetteer) on a real port; can be stopped, restarted and changed."""

    def __init__(self, snap: DirectorySnapshot) -> None:
        self.snapshot = snap
        self.port = free_port()
        self.reads = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        app = FastAPI()

        @app.get("/internal/snapshot")
        async def read(authorization: str = Header("")) -> Response:
            if authorization != as_service("router")["Authorization"]:
                raise HTTPException(403)
            self.reads += 1
            return Response(self.snapshot.model_dump_json(), media_type="application/json")

        @app.get("/internal/gazetteer")
        async def read_gazetteer(authorization: str = Header("")) -> Response:
            if authorization != as_service("router")["Authorization"]:
                raise HTTPException(403)
            return Response(GAZETTEER.model_dump_json(), media_type="application/json")

        @app.post(AUTHENTICATE_PATH)
        async def authenticate_ops(body: dict[str, str], authorization: str = Header("")) -> dict[str, str]:
            if authorization != as_service("router")["Authorization"]:
                raise HTTPException(403)
            if body["api_key"] != OPS_KEY:
                raise HTTPException(404)
            return {"ops_user_id": "ops-test", "name": "ops-test"}

        self.app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None


class Notify:
    """Plays notify and intake on the bus: hears what the router publishes, answers offers."""

    def __init__(self, nats_url: str) -> None:
        self.bus = Bus(nats_url, name="test-notify")
        self.routed: list[CaseRouted] = []
        self.escalated: list[CaseEscalated] = []
        self.statuses: list[CaseStatus] = []

    async def __aenter__(self) -> Self:
        async def hear(event: Event, _delivery: Delivery) -> None:
            {CaseRouted: self.routed, CaseEscalated: self.escalated, CaseStatus: self.statuses}[type(event)].append(
                event  # type: ignore[arg-type]
            )

        self.bus.consume("test-listener", ["case.routed", "case.escalated", "case.status"], hear)
        await self.bus.start()
        await self.bus.wait_ready(15)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bus.close()

    def offers(self, case_id: UUID) -> list[str]:
        return [s.service_id for e in self.routed if e.case_id == case_id for s in e.offer_to]

    async def answer(self, case_id: UUID, service_id: str, event_type: type[OfferDeclined | OfferExpired],
                     reason: str | None = None) -> None:
        await self.bus.publish(event_type(case_id=case_id, offer_id=uuid4(), service_id=service_id,
                                          organisation_id=f"org-{service_id}", reason=reason))


def referral(case_id: UUID | None = None, *, band: RiskBand = RiskBand.standard, **summary: Any) -> ReferralReceived:
    summary.setdefault("postcode_district", "LS7")
    return ReferralReceived(
        case_id=case_id or uuid4(),
        referrer_ods="Y00001",
        summary=CaseSummary(risk_band=band, setting=CareSetting.gp, **summary),
        consent=ConsentState(status=ConsentStatus.granted, scopes=tuple(ConsentScope)),
    )


def router_settings(nats: NatsServer, database_url: str, directory: StubDirectory, **kw: Any) -> RouterSettings:
    return RouterSettings(
        nats_url=nats.url, database_url=database_url, **service_auth("router"), directory_url=directory.url,
        directory_refresh_seconds=3600, **kw,
    )


@pytest.fixture
async def directory() -> AsyncIterator[StubDirectory]:
    stub = StubDirectory(snapshot())
    await stub.start()
    yield stub
    await stub.stop()


@pytest.fixture
async def notify(nats_server: NatsServer) -> AsyncIterator[Notify]:
    async with Notify(nats_server.url) as listener:
        yield listener


async def test_decline_and_expiry_move_along_the_ranking_then_ops_is_told(
    nats_server: NatsServer, database_url: str, directory: StubDirectory, notify: Notify
) -> None:
    settings = router_settings(nats_server, database_url, directory,
                               protocol=AreaProtocol(escalate_after_failed_offers=5))
    async with running(create_app(settings)) as client:
        case = referral(characteristics=("black-minoritised",))
        await notify.bus.publish(case)
        await eventually(lambda: _async(notify.offers(case.case_id) == ["kinara-outreach"]))

        await notify.answer(case.case_id, "kinara-outreach", OfferDeclined, reason="no-capacity")
        await eventually(lambda: _async(notify.offers(case.case_id) == ["kinara-outreach", "leeds-outreach"]))
        reoffer = notify.routed[-1]
        first = notify.routed[0]
        assert reoffer.decision_id != first.decision_id and reoffer.summary == first.summary
        # The routed case carries its resolved area beside what intake sent.
        assert first.summary.area is not None and first.summary.area.lads[0].code == "E08000035"
        assert first.summary.model_copy(update={"area": None}) == case.summary
        assert "next in the ranking: offer to kinara-outreach declined (no-capacity)" in reoffer.offer_to[0].reasons

        await notify.answer(case.case_id, "leeds-outreach", OfferExpired)
        await eventually(lambda: _async(len(notify.offers(case.case_id)) == 3))
        assert notify.offers(case.case_id)[-1] == "leeds-outreach-b"
        assert notify.escalated == []

        await notify.answer(case.case_id, "leeds-outreach-b", OfferDeclined)
        await eventually(lambda: _async(len(notify.escalated) == 1))
        assert notify.escalated[0].case_id == case.case_id
        assert "specialist ranking is exhausted" in notify.escalated[0].reason
        await eventually(lambda: _async(any(s.business_status == "escalated to ops" for s in notify.statuses)))
        assert len(notify.offers(case.case_id)) == 3  # nobody offered twice

        headers = {"Authorization": f"Bearer {OPS_KEY}"}
        body = (await client.get(f"/cases/{case.case_id}/decision", headers=headers)).json()
        assert body["state"] == "exhausted"
        assert [d["kind"] for d in body["decisions"]] == ["initial", "re-offer", "re-offer", "exhausted"]
        assert body["decisions"][1]["trigger"] == "offer to kinara-outreach declined (no-capacity)"
        assert body["decisions"][2]["trigger"] == "offer to leeds-outreach expired without an answer"
        assert "escalated to ops" in body["note"]


async def test_ops_hears_after_the_area_count_of_failed_offers(
    nats_server: NatsServer, database_url: str, directory: StubDirectory, notify: Notify
) -> None:
    # Leeds' local protocol escalates after one failed offer; re-offers carry on regardless.
    settings = router_settings(nats_server, database_url, directory,
                               area_protocols={"E08000035": AreaProtocol(escalate_after_failed_offers=1)})
    async with running(create_app(settings)):
        case = referral(band=RiskBand.high)
        await notify.bus.publish(case)
        await eventually(lambda: _async(notify.offers(case.case_id) == ["leeds-idva", "leeds-marac"]))
        assert notify.routed[0].offer_to[0].respond_within_hours == 4.0
        await notify.answer(case.case_id, "leeds-idva", OfferExpired)
        await eventually(lambda: _async(len(notify.offers(case.case_id)) == 3 and len(notify.escalated) == 1))
        assert notify.offers(case.case_id)[-1] == "leeds-idva-b"
        assert notify.escalated[0].reason == "1 offers declined or expired for this case"


async def test_open_offers_from_notify_decide_capacity_and_the_pass_is_recorded(
    nats_server: NatsServer, database_url: str, directory: StubDirectory, notify: Notify
) -> None:
    app = create_app(router_settings(nats_server, database_url, directory))

    async def open_offers_at_leeds_idva(expected: int) -> bool:
        async with app.state.runtime.db.session() as session:
            return (await open_offer_counts(session, ["leeds-idva"])).get("leeds-idva", 0) == expected

    async with running(app) as client:
        # leeds-idva takes one open offer at a time (the stub directory's max_open_offers).
        offer_id, other_case = uuid4(), uuid4()
        await notify.bus.publish(OfferMade(case_id=other_case, offer_id=offer_id, service_id="leeds-idva",
                                           organisation_id="org-leeds-idva"))
        await eventually(lambda: open_offers_at_leeds_idva(1))
        full = referral(band=RiskBand.high)
        await notify.bus.publish(full)
        await eventually(lambda: _async(notify.offers(full.case_id) == ["leeds-idva-b", "leeds-marac"]))
        body = (await client.get(f"/cases/{full.case_id}/decision", headers={"X-API-Key": OPS_KEY})).json()
        assert body["decisions"][0]["passed_over"] == {"leeds-idva": "passed over: at capacity (1 of 1 open offers)"}

        # Accepted: no longer open, so the IDVA has room again.
        await notify.bus.publish(OfferAccepted(case_id=other_case, offer_id=offer_id, service_id="leeds-idva",
                                               organisation_id="org-leeds-idva"))
        await eventually(lambda: open_offers_at_leeds_idva(0))
        room = referral(band=RiskBand.high)
        await notify.bus.publish(room)
        await eventually(lambda: _async(notify.offers(room.case_id) == ["leeds-idva", "leeds-marac"]))


async def test_open_offers_are_counted_from_the_index_alone(
    nats_server: NatsServer, database_url: str, directory: StubDirectory
) -> None:
    """A case's capacity check reads its capped candidates' open offers from ``(service_id, open)``, never
    the whole table, which keeps every offer the router has seen (issue 9)."""
    app = create_app(router_settings(nats_server, database_url, directory))
    async with running(app), app.state.runtime.db.session() as session:
        assert await open_offer_counts(session, []) == {}
        connection = await session.connection()
        statement = _OPEN_OFFER_COUNTS.params(ids=["a", "b"]).compile(
            dialect=connection.dialect, compile_kwargs={"literal_binds": True}
        )
        if connection.dialect.name == "sqlite":
            plan = (await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}")).all()
            expected = "USING COVERING INDEX ix_offer_load_service_open"
        else:
            # PostgreSQL chooses by the table's statistics (an empty table is read whole): with sequential
            # scans priced out, the plan shows the index takes both conditions.
            await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = (await connection.exec_driver_sql(f"EXPLAIN {statement}")).all()
            expected = "ix_offer_load_service_open"
    details = " ".join(str(row[-1]) for row in plan)
    assert expected in details and "Seq Scan" not in details, details
    if connection.dialect.name != "sqlite":
        assert "Index Cond: (((service_id)::text = ANY" in details and "AND (open = true))" in details, details


async def test_a_parallel_offer_declined_after_another_was_accepted_is_not_chased(
    nats_server: NatsServer, database_url: str, directory: StubDirectory, notify: Notify
) -> None:
    async with running(create_app(router_settings(nats_server, database_url, directory))) as client:
        case = referral(characteristics=("lgbt+",))
        await notify.bus.publish(case)
        await eventually(lambda: _async(notify.offers(case.case_id) == ["leeds-outreach", "national-lgbt-outreach"]))
        await notify.bus.publish(OfferAccepted(case_id=case.case_id, offer_id=uuid4(), service_id="leeds-outreach",
                                               organisation_id="org-leeds-outreach"))
        await notify.answer(case.case_id, "national-lgbt-outreach", OfferDeclined)
        headers = {"X-API-Key": OPS_KEY}

        async def settled() -> bool:
            body = (await client.get(f"/cases/{case.case_id}/decision", headers=headers)).json()
            return [d["kind"] for d in body["decisions"]] == ["initial", "settled"]

        await eventually(settled)
        assert len(notify.routed) == 1 and notify.escalated == []


async def test_no_consent_waits_with_the_task_saying_why_then_consent_routes_it(
    nats_server: NatsServer, database_url: str, directory: StubDirectory, notify: Notify
) -> None:
    async with running(create_app(router_settings(nats_server, database_url, directory))) as client:
        case = referral().model_copy(update={"consent": ConsentState(status=ConsentStatus.not_asked)})
        await notify.bus.publish(case)
        await eventually(lambda: _async(len(notify.statuses) == 1))
        status = notify.statuses[0]
        # Not a final answer: recording consent routes it (a refusal would be: tests/integration/test_task_final_status.py).
        assert status.status is TaskStatus.requested and status.business_status_code == "awaiting-consent"
        assert status.status_reason_code == "consent-not-asked" and status.consent_version == 1
        assert status.status_reason == (
            "no offer made: consent not-asked for a standard-risk referral; ask the survivor and update consent "
            "to route it. Advice: national-da-helpline (sample)"
        )
        assert notify.routed == [] and notify.escalated == []
        # Intake numbers the change: version 2 (the referral arrived with version 1).
        granted = ConsentState(status=ConsentStatus.granted, scopes=(ConsentScope.specialist_da,), version=2)
        await notify.bus.publish(ConsentUpdated(case_id=case.case_id, consent=granted))
        await eventually(lambda: _async(notify.offers(case.case_id) == ["leeds-outreach"]))
        assert notify.routed[0].consent == granted
        body = (await client.get(f"/cases/{case.case_id}/decision", headers={"X-API-Key": OPS_KEY})).json()
        assert [(d["kind"], d["trigger"]) for d in body["decisions"]] == [
            ("initial", None), ("re-route", "consent updated: granted")]


async def test_consent_refused_is_a_final_answer_and_a_routed_case_carries_its_summary(
    nats_server: NatsServer, database_url: str, directory: StubDirectory, notify: Notify
) -> None:
    async with running(create_app(router_settings(nats_server, database_url, directory))):
        refused = referral().model_copy(update={"consent": ConsentState(status=ConsentStatus.refused)})
        await notify.bus.publish(refused)
        await eventually(lambda: _async(len(notify.statuses) == 1))
        [status] = notify.statuses
        assert (status.status, status.business_status_code, status.status_reason_code) == (
            TaskStatus.rejected, "no-offer", "consent-refused")
        assert status.routing_summary is not None and status.routing_summary.startswith("No offer made")
        assert notify.routed == [] and notify.escalated == []

        routed = referral(characteristics=("lgbt+",))
        await notify.bus.publish(routed)
        await eventually(lambda: _async(len(notify.routed) == 1))
        assert notify.routed[0].routing_summary == (
            "Offered to a community specialist service and a by-and-for service; standard risk. A by-and-for "
            "service matching what the survivor shared was chosen. Helplines to mention: "
            "national-lgbt-helpline (sample).")


async def test_routing_carries_on_from_the_last_good_copy_while_the_directory_is_down(
    nats_server: NatsServer, database_url: str, directory: StubDirectory, notify: Notify
) -> None:
    async with running(create_app(router_settings(nats_server, database_url, directory))):
        first = referral()
        await notify.bus.publish(first)
        await eventually(lambda: _async(notify.offers(first.case_id) == ["leeds-outreach"]))

        await directory.stop()
        second = referral(band=RiskBand.high)
        await notify.bus.publish(second)
        await eventually(lambda: _async(notify.offers(second.case_id) == ["leeds-idva", "leeds-marac"]))
        # A change announced while the directory is away keeps the copy held.
        await notify.bus.publish(DirectoryChanged(entity="service", entity_id="leeds-idva", change="updated"))
        third = referral()
        await notify.bus.publish(third)
        await eventually(lambda: _async(notify.offers(third.case_id) == ["leeds-outreach"]))

        # Back, but empty (a database being restored): not a better copy than the one held.
        directory.snapshot = snapshot(services=(), version="empty")
        await directory.start()
        await notify.bus.publish(DirectoryChanged(entity="service", entity_id="*", change="imported"))
        await eventually(lambda: _async(directory.reads >= 2))
        fourth = referral()
        await notify.bus.publish(fourth)
        await eventually(lambda: _async(notify.offers(fourth.case_id) == ["leeds-outreach"]))


async def test_a_case_waits_for_the_directory_when_no_copy_is_held_and_is_then_routed(
    nats_server: NatsServer, database_url: str, notify: Notify
) -> None:
    stub = StubDirectory(snapshot())  # not started: the directory is down from the outset
    async with running(create_app(router_settings(nats_server, database_url, stub))):
        case = referral()
        await notify.bus.publish(case)

        async def tried_and_retrying() -> bool:
            # Delivered a second time: the first attempt failed (no directory) and the case waits.
            info = await notify.bus.js.consumer_info(EVENTS_STREAM, "router-referrals")
            return info.delivered.consumer_seq >= 2 and info.ack_floor.stream_seq == 0

        await eventually(tried_and_retrying)
        assert notify.routed == []
        await stub.start()
        try:
            await eventually(lambda: _async(notify.offers(case.case_id) == ["leeds-outreach"]), timeout=30)
        finally:
            await stub.stop()


async def test_two_routers_route_each_case_once_and_both_hear_directory_changes(
    nats_server: NatsServer, database_url: str, directory: StubDirectory, notify: Notify
) -> None:
    settings = router_settings(nats_server, database_url, directory)
    first_app, second_app = create_app(settings), create_app(settings)
    async with running(first_app), running(second_app):
        cases = [referral() for _ in range(20)]
        # The same case re-sent under new event ids, at the same time: still one decision.
        resent = [c.model_copy(update={"event_id": uuid4()}) for c in cases[:5]]
        await asyncio.gather(*(notify.bus.publish(c) for c in [*cases, *resent]))
        await eventually(lambda: _async(len({e.case_id for e in notify.routed}) == 20), timeout=30)
        # Every referral handled by the routers, everything they decided published and heard: anything
        # routed twice would be in ``notify.routed`` now.
        await eventually(lambda: settled(notify, first_app, second_app))
        assert sorted(str(e.case_id) for e in notify.routed) == sorted(str(c.case_id) for c in cases)

        # Both offers of a high-risk case answered at once, each replica taking one: the IDVA lane moves
        # on, the MARAC lane is exhausted, and neither answer loses what the other recorded.
        high = referral(band=RiskBand.high)
        await notify.bus.publish(high)
        await eventually(lambda: _async(notify.offers(high.case_id) == ["leeds-idva", "leeds-marac"]))
        await asyncio.gather(notify.answer(high.case_id, "leeds-idva", OfferDeclined),
                             notify.answer(high.case_id, "leeds-marac", OfferDeclined))
        await eventually(lambda: _async(len(notify.offers(high.case_id)) == 3 and len(notify.escalated) == 1))
        assert notify.offers(high.case_id)[-1] == "leeds-idva-b"
        assert "marac ranking is exhausted" in notify.escalated[0].reason
        async with first_app.state.runtime.db.session() as session:
            stored = await session.get(RoutedCase, high.case_id)
            assert stored is not None and stored.offered == ["leeds-idva", "leeds-marac", "leeds-idva-b"]
            assert stored.failed_offers == 2

        # Each replica holds its own copy; one directory.changed reaches both.
        directory.snapshot = snapshot(version="test-2")
        await notify.bus.publish(DirectoryChanged(entity="service", entity_id="leeds-outreach", change="updated"))
        for app in (first_app, second_app):
            await eventually(lambda app=app: _async(app.state.router.cache.index.version == "test-2"))


async def test_decision_and_explain_are_for_ops_and_services_and_explain_creates_nothing(
    nats_server: NatsServer, database_url: str, directory: StubDirectory, notify: Notify
) -> None:
    app = create_app(router_settings(nats_server, database_url, directory))
    async with running(app) as client:
        case = referral()
        await notify.bus.publish(case)
        await eventually(lambda: _async(len(notify.routed) == 1))
        path = f"/cases/{case.case_id}/decision"
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers={"Authorization": "Bearer nope"})).status_code == 401
        # A service credential is never accepted on a public route (issue 13): the decision is for ops.
        assert (await client.get(path, headers=as_service("intake"))).status_code == 401
        as_ops = await client.get(path, headers={"X-API-Key": OPS_KEY})
        assert as_ops.status_code == 200
        decision = as_ops.json()["decisions"][0]
        assert decision["offer_to"][0]["reasons"][:2] == ["serves Leeds (E08000035)", "community specialist service"]
        assert decision["excluded"]["leeds-idva"] == "excluded: IDVA and MARAC are for high-risk cases"
        assert decision["rule_version"] and decision["directory_version"] == "test-1"
        assert as_ops.json()["note"] == "offered to leeds-outreach (sample)"
        unknown = await client.get(f"/cases/{uuid4()}/decision", headers={"X-API-Key": OPS_KEY})
        assert unknown.status_code == 404
        # Every ops read (shared characteristics among what it shows) is on record; the 404 read nothing.
        as_ops = await client.get(path, headers={"Authorization": f"Bearer {OPS_KEY}"})
        assert as_ops.status_code == 200, as_ops.text
        trail = (await client.get("/ops/audit/router", headers={"Authorization": f"Bearer {OPS_KEY}"})).json()
        # Both reads above were ops' (a service credential is refused here), so both are on record.
        assert [(e["actor_kind"], e["action"], e["case_id"]) for e in trail] == [
            ("ops", "read-routing-decision", str(case.case_id))] * 2

        # "What would happen to a Deaf survivor in this postcode?"
        question = {"summary": {"postcode_district": "LS7", "risk_band": "standard", "setting": "gp",
                                "needs": ["bsl"]}}
        assert (await client.post("/explain", json=question)).status_code == 401
        answer = await client.post("/explain", json=question, headers={"Authorization": f"Bearer {OPS_KEY}"})
        assert answer.status_code == 200, answer.text
        explained = answer.json()
        assert [s["service_id"] for s in explained["offer_to"]] == ["wy-deaf-outreach"]
        assert "by-and-for Deaf survivors, matches BSL need" in explained["offer_to"][0]["reasons"]
        assert explained["excluded"]["leeds-outreach"] == "excluded: no BSL provision, which the survivor needs"
        # An LGBT+ survivor: the local offer, and the LGBT+ helpline named beside it as advice (issue 12).
        question["summary"] = {**question["summary"], "needs": [], "characteristics": ["lgbt+"]}
        explained = (await client.post("/explain", json=question, headers={"X-API-Key": OPS_KEY})).json()
        assert [s["service_id"] for s in explained["helplines"]] == ["national-lgbt-helpline"]
        assert "specialist national helpline: advice beside the offers" in explained["helplines"][0]["reasons"]
        assert "specialist national helplines named as advice: national-lgbt-helpline (sample)" in explained["notes"]
        assert "Helplines to mention: national-lgbt-helpline (sample)." in explained["referrer_summary"]
        await eventually(lambda: settled(notify, app))
        assert len(notify.routed) == 1  # nothing was offered
        assert (await client.post("/explain", json={"summary": {}}, headers={"X-API-Key": OPS_KEY})
                ).status_code == 422


async def settled(notify: Notify, *apps: FastAPI) -> bool:
    """The routers handled every referral, published every event they committed, and the listener heard
    all of it."""
    return (await consumer_drained(notify.bus.js, "router-referrals")
            and all([await outbox_empty(app) for app in apps])
            and await consumer_drained(notify.bus.js, "test-listener"))


async def _async(value: bool) -> bool:
    """``eventually`` takes an async predicate; these conditions are plain checks of what was heard."""
    return value



async def test_a_referral_the_router_cannot_route_is_dead_lettered_and_ops_replays_it_with_the_cli(
    nats_server: NatsServer, database_url: str, notify: Notify
) -> None:
    stub = StubDirectory(snapshot())  # down: every attempt fails
    settings = router_settings(nats_server, database_url, stub, referral_max_deliver=2)
    async with running(create_app(settings)):
        case = referral()
        await notify.bus.publish(case)

        async def dead_lettered() -> bool:
            return (await notify.bus.js.stream_info(DLQ_STREAM)).state.messages == 1

        await eventually(dead_lettered, timeout=30)
        dead = await notify.bus.js.get_msg(DLQ_STREAM, (await notify.bus.js.stream_info(DLQ_STREAM)).state.last_seq)
        assert dead.headers is not None
        assert (dead.headers["Pathways-Dlq-Consumer"], dead.headers["Pathways-Dlq-Deliveries"]) == ("router-referrals", "2")
        assert dead.headers["Pathways-Dlq-Error"] == "DirectoryUnavailable"
        assert notify.routed == []

        # The directory is back; ops replays the dead letters through the CLI, and the case is routed.
        await stub.start()
        try:
            code, output = await pathways("dlq", "replay", env={"NATS_URL": nats_server.url})
            assert (code, output.strip().splitlines()[-1]) == (0, "replayed 1 message(s)")
            await eventually(lambda: _async(notify.offers(case.case_id) == ["leeds-outreach"]), timeout=30)
        finally:
            await stub.stop()
        assert (await notify.bus.js.stream_info(DLQ_STREAM)).state.messages == 0


async def test_a_consent_change_that_arrives_before_its_referral_is_applied_once_the_case_is_routed(
    nats_server: NatsServer, database_url: str, directory: StubDirectory, notify: Notify
) -> None:
    app = create_app(router_settings(nats_server, database_url, directory))
    async with running(app):
        case = referral()
        narrowed = ConsentState(status=ConsentStatus.granted, scopes=(ConsentScope.idva,), version=2)
        # Intake published both in order, but they travel on different consumers: the change comes first.
        await notify.bus.publish(ConsentUpdated(case_id=case.case_id, consent=narrowed))
        await notify.bus.publish(case)
        await eventually(lambda: _async(len(notify.routed) == 1))

        async def narrowed_here() -> bool:
            async with app.state.runtime.db.session() as session:
                stored = await session.get(RoutedCase, case.case_id)
                return stored is not None and ConsentState.model_validate(stored.consent) == narrowed

        await eventually(narrowed_here, timeout=30)
