"""Notify's two-phase handoff, with real NATS, a real database, the real intake and a stub directory on a
real port: offers, answers, the consent gate at the moment of release, withdrawal, outcomes, paging."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from sqlmodel import col, select

from services.intake.retention import purge_due
from services.intake.store import Referral
from services.launcher import NatsServer
from services.notify.offers import known_consent
from services.notify.store import CaseConsent, Escalation, RoutingRecord, WebhookDelivery
from shared.audit import AuditRecord
from shared.events import (
    CaseStatus,
    ConsentScope,
    ConsentState,
    ConsentStatus,
    OfferContactStopped,
    OfferDeclined,
    OfferWithdrawn,
    ReferralCancelled,
    TaskStatus,
)
from tests.harness import eventually
from tests.integration.notify_world import (
    World,
    accepted_offer,
    fhir_consent,
    offer_for,
    provider,
    withdrawal,
    world_for,
)

IDENTIFYING = ("Alex", "Example", "1990-04-01", "LS7 9ZZ", "07700", "Synthetic Street")


@pytest.fixture
async def world(nats_server: NatsServer, database_url: str, tmp_path: Path, encryption_keys: str) -> AsyncIterator[World]:
    async with world_for(nats_server.url, database_url, tmp_path, encryption_keys) as w:
        yield w


async def case_statuses(world: World, case_id: UUID) -> list[CaseStatus]:
    return [e for e in await world.published(CaseStatus.subject) if e.case_id == case_id]  # type: ignore[attr-defined]


async def test_offer_then_accept_then_handoff_then_outcomes_reach_the_referrer(world: World):
    async with world.notify() as notify:
        case_id = await world.refer(identifier="two-phase")
        await world.route(case_id, "outreach")
        offer = await offer_for(notify, "key-outreach", case_id)

        # The offer: a non-identifying summary, why this service, and the deadline.
        assert offer["status"] == "offered" and offer["summary"]["risk_band"] == "high"
        assert offer["reasons"] == ["serves Leeds (E08000035)"] and offer["respond_by"]
        assert not any(word in json.dumps(offer) for word in IDENTIFYING)
        # Another provider sees nothing of it.
        assert (await notify.get(f"/offers/{offer['id']}", headers=provider("key-idva"))).status_code == 404
        assert (await notify.get("/offers", headers=provider("key-idva"))).json() == []

        # Phase one: no handoff before acceptance.
        refused = await notify.get(f"/offers/{offer['id']}/handoff", headers=provider("key-outreach"))
        assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
        accepted = await notify.post(f"/offers/{offer['id']}/accept", headers=provider("key-outreach"))
        assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"

        # Phase two: the handoff, safe-contact rules first, with flags a system can act on.
        handoff = await notify.get(f"/offers/{offer['id']}/handoff", headers=provider("key-outreach"))
        assert handoff.status_code == 200, handoff.text
        body = handoff.json()
        assert next(iter(body)) == "safe_contact"
        assert body["safe_contact"]["no_voicemail"] is True and body["safe_contact"]["do_not_contact"] is False
        assert "Do not leave voicemail" in body["safe_contact"]["instructions"]
        assert body["survivor"]["birth_date"] == "1990-04-01"
        assert body["release_basis"] == "consent covers specialist-da-service"
        async with notify.app.state.runtime.db.session() as session:
            released = (await session.exec(select(AuditRecord).where(AuditRecord.action == "release-handoff"))).all()
        assert [r.actor_id for r in released] == ["org-outreach"] and released[0].case_id == case_id

        for outcome in ("contact-made", "survivor-engaged", "closed"):
            response = await notify.post(f"/offers/{offer['id']}/outcomes", json={"outcome": outcome},
                                         headers=provider("key-outreach"))
            assert response.status_code == 200, response.text
        assert response.json()["outcomes"] == ["contact-made", "survivor-engaged", "closed"]
        # Closed is final: a later outcome cannot reopen the case (or move the Task back), and
        # repeating "closed" changes and announces nothing.
        reopened = await notify.post(f"/offers/{offer['id']}/outcomes", json={"outcome": "contact-made"},
                                     headers=provider("key-outreach"))
        assert reopened.status_code == 409 and reopened.headers["content-type"] == "application/problem+json"
        assert "closed, which is final" in reopened.json()["detail"]
        again = await notify.post(f"/offers/{offer['id']}/outcomes", json={"outcome": "closed"},
                                  headers=provider("key-outreach"))
        assert again.status_code == 200 and again.json()["outcomes"] == ["contact-made", "survivor-engaged", "closed"]
        assert again.json()["outcome"] == "closed"

        async def task_closed() -> bool:
            statuses = await case_statuses(world, case_id)
            return any(s.status is TaskStatus.completed for s in statuses)

        await eventually(task_closed)
        statuses = await case_statuses(world, case_id)
        assert [s.status for s in statuses] == [TaskStatus.requested, TaskStatus.accepted, TaskStatus.in_progress,
                                                TaskStatus.in_progress, TaskStatus.completed]
        assert statuses[1].business_status == "accepted by Outreach (synthetic)"
        assert statuses[2].business_status == "contact made" and statuses[2].outputs == ("contact-made",)
        assert statuses[-1].outputs == ("contact-made", "survivor-engaged", "closed")


async def test_decline_needs_a_coded_reason_and_goes_back_to_the_router(world: World):
    async with world.notify() as notify:
        case_id = await world.refer(identifier="decline")
        await world.route(case_id, "outreach")
        offer = await offer_for(notify, "key-outreach", case_id)
        url = f"/offers/{offer['id']}/decline"
        assert (await notify.post(url, json={"reason": "busy"}, headers=provider("key-outreach"))).status_code == 422
        assert (await notify.post(url, json={"reason": "other"}, headers=provider("key-outreach"))).status_code == 422
        declined = await notify.post(url, json={"reason": "out-of-area"}, headers=provider("key-outreach"))
        assert declined.status_code == 200 and declined.json()["status_reason"] == "out-of-area"
        # Declined offers cannot be accepted, nor their handoff read.
        assert (await notify.post(f"/offers/{offer['id']}/accept", headers=provider("key-outreach"))).status_code == 409
        assert (await notify.get(f"/offers/{offer['id']}/handoff", headers=provider("key-outreach"))).status_code == 409

        async def announced() -> bool:
            return any(e.offer_id == UUID(offer["id"]) for e in await world.published(OfferDeclined.subject))  # type: ignore[attr-defined]

        await eventually(announced)
        [event] = [e for e in await world.published(OfferDeclined.subject) if e.case_id == case_id]  # type: ignore[attr-defined]
        assert (event.service_id, event.organisation_id, event.reason) == ("svc-outreach", "org-outreach", "out-of-area")


async def escalations(world: World, notify, case_id: UUID) -> list[str]:
    async with notify.app.state.runtime.db.session() as session:
        return [e.reason for e in (await session.exec(select(Escalation).where(Escalation.case_id == case_id))).all()]


async def consent_in_notify(notify, case_id: UUID) -> ConsentState:
    async with notify.app.state.runtime.db.session() as session:
        return known_consent(await session.get(CaseConsent, case_id))


async def test_a_routed_service_the_consent_does_not_permit_gets_no_offer_and_ops_hears(world: World):
    async with world.notify() as notify:
        case_id = await world.refer(identifier="scope", scopes=(ConsentScope.idva,))
        await world.route(case_id, "outreach", "idva")
        inside = await offer_for(notify, "key-idva", case_id)

        async def held_back() -> bool:
            return any("svc-outreach" in reason for reason in await escalations(world, notify, case_id))

        await eventually(held_back)
        assert [o.service_id for o in await world.offers_of(notify.app, case_id)] == ["svc-idva"]
        assert (await notify.post(f"/offers/{inside['id']}/accept", headers=provider("key-idva"))).status_code == 200
        allowed = await notify.get(f"/offers/{inside['id']}/handoff", headers=provider("key-idva"))
        assert allowed.status_code == 200 and allowed.json()["release_basis"] == "consent covers idva"


async def test_marac_receives_the_handoff_on_the_recorded_safeguarding_basis_without_consent(world: World):
    async with world.notify() as notify:
        case_id = await world.refer(identifier="marac", example="high-risk-no-consent-safeguarding.json")
        consent = await world.consent_in_intake(case_id)
        assert consent.status is ConsentStatus.refused and consent.safeguarding_basis
        await world.route(case_id, "marac", "idva")
        marac = await offer_for(notify, "key-marac", case_id)
        assert (await notify.post(f"/offers/{marac['id']}/accept", headers=provider("key-marac"))).status_code == 200
        released = await notify.get(f"/offers/{marac['id']}/handoff", headers=provider("key-marac"))
        assert released.status_code == 200
        assert released.json()["release_basis"] == "recorded high-risk safeguarding basis (MARAC)"

        # The safeguarding basis is the MARAC's alone: the IDVA is not even offered the case.
        async def held_back() -> bool:
            return any("svc-idva" in reason for reason in await escalations(world, notify, case_id))

        await eventually(held_back)
        assert [o.service_id for o in await world.offers_of(notify.app, case_id)] == ["svc-marac"]


async def test_consent_withdrawn_withdraws_pending_offers_and_stops_providers_holding_the_handoff(world: World):
    async with world.notify() as notify:
        case_id = await world.refer(identifier="withdrawal", scopes=(ConsentScope.specialist_da, ConsentScope.idva))
        granted = await world.consent_in_intake(case_id)
        await world.route(case_id, "outreach", "idva")
        holding = await offer_for(notify, "key-outreach", case_id)
        pending = await offer_for(notify, "key-idva", case_id)
        assert (await notify.post(f"/offers/{holding['id']}/accept", headers=provider("key-outreach"))).status_code == 200
        assert (await notify.get(f"/offers/{holding['id']}/handoff", headers=provider("key-outreach"))).status_code == 200

        assert (await world.update_consent(case_id, withdrawal())).status_code == 200

        async def stopped() -> bool:
            response = await notify.get(f"/offers/{holding['id']}", headers=provider("key-outreach"))
            return bool(response.json()["stop_contact"])

        await eventually(stopped)
        # Every later handoff read answers 410 Gone, for both providers.
        for key, offer in (("key-outreach", holding), ("key-idva", pending)):
            gone = await notify.get(f"/offers/{offer['id']}/handoff", headers=provider(key))
            assert gone.status_code == 410, gone.text
        now_pending = (await notify.get(f"/offers/{pending['id']}", headers=provider("key-idva"))).json()
        assert now_pending["status"] == "withdrawn" and now_pending["status_reason"] == "consent-withdrawn"
        # Polling shows the stop plainly.
        stopped_offer = (await notify.get(f"/offers/{holding['id']}", headers=provider("key-outreach"))).json()
        assert stopped_offer["stop_contact_reason"] == "consent-withdrawn"

        async def announced() -> bool:
            events = [e for e in await world.published(OfferWithdrawn.subject) if e.case_id == case_id]  # type: ignore[attr-defined]
            return [e.offer_id for e in events] == [UUID(pending["id"])]

        await eventually(announced)

        async def task_cancelled() -> bool:
            return any(s.status is TaskStatus.cancelled for s in await case_statuses(world, case_id))

        await eventually(task_cancelled)
        # Routing decisions made on the router's older copy of the consent (granted, version 1) arrive
        # late: no new offer, and the consent notify checks stays the withdrawal (version 2).
        await world.route(case_id, "marac", consent=granted)
        await world.route(case_id, "hooked", consent=granted)

        async def both_routes_seen() -> bool:
            async with notify.app.state.runtime.db.session() as session:
                return len((await session.exec(select(RoutingRecord).where(RoutingRecord.case_id == case_id))).all()) == 3

        await eventually(both_routes_seen)
        assert len(await world.offers_of(notify.app, case_id)) == 2
        consent = await consent_in_notify(notify, case_id)
        assert (consent.status, consent.version) == (ConsentStatus.withdrawn, 2)
        gone = await notify.get(f"/offers/{holding['id']}/handoff", headers=provider("key-outreach"))
        assert gone.status_code == 410


async def test_a_late_route_with_older_consent_cannot_widen_a_narrowed_consent(world: World):
    async with world.notify() as notify:
        case_id = await world.refer(identifier="narrowed", scopes=(ConsentScope.specialist_da, ConsentScope.idva))
        broad = await world.consent_in_intake(case_id)
        await world.route(case_id, "idva")
        await offer_for(notify, "key-idva", case_id)

        # The survivor narrows consent to the IDVA only (version 2); notify hears of it.
        narrowed = await world.update_consent(case_id, fhir_consent(scopes=(ConsentScope.idva,)))
        assert narrowed.status_code == 200, narrowed.text

        async def heard() -> bool:
            return (await consent_in_notify(notify, case_id)).version == 2

        await eventually(heard)
        # A re-offer the router made on its older, broader copy (version 1) reaches notify afterwards,
        # stamped later than the narrowing.
        late = await world.route(case_id, "outreach", consent=broad)

        async def late_route_seen() -> bool:
            async with notify.app.state.runtime.db.session() as session:
                return await session.get(RoutingRecord, late.decision_id) is not None

        await eventually(late_route_seen)
        consent = await consent_in_notify(notify, case_id)
        assert (consent.version, consent.scopes) == (2, (ConsentScope.idva,))
        assert [o.service_id for o in await world.offers_of(notify.app, case_id)] == ["svc-idva"]

        # Ops hear through case.escalated, which crosses the bus after the routing record is committed.
        async def held_back() -> bool:
            return any("svc-outreach" in reason for reason in await escalations(world, notify, case_id))

        await eventually(held_back)


async def test_intake_refuses_the_handoff_when_consent_was_withdrawn_before_notify_heard(world: World):
    async with world.notify() as notify:
        case_id, offer = await accepted_offer(world, notify, identifier="release-check")

        # Intake's events stay in its outbox: notify cannot hear of the withdrawal.
        relay = world.intake.state.runtime.relay
        await relay.stop()
        assert (await world.update_consent(case_id, withdrawal())).status_code == 200
        assert (await consent_in_notify(notify, case_id)).status is ConsentStatus.granted

        gone = await notify.get(f"/offers/{offer['id']}/handoff", headers=provider("key-outreach"))
        assert gone.status_code == 410, gone.text
        assert gone.json()["detail"] == "The survivor withdrew consent: do not make contact."
        async with world.intake.state.runtime.db.session() as session:
            reads = (await session.exec(select(AuditRecord).where(AuditRecord.case_id == case_id))).all()
        # The withdrawal is on record; no release is.
        assert [r.action for r in reads] == ["update-consent"]

        # Once notify hears, the offer is withdrawn (nothing was released, so nobody must stop contact).
        relay.start()

        async def withdrawn() -> bool:
            response = await notify.get(f"/offers/{offer['id']}", headers=provider("key-outreach"))
            return response.json()["status"] == "withdrawn"

        await eventually(withdrawn)


async def test_withdrawal_after_the_case_closed_stops_the_provider_and_purges_the_data(world: World):
    async with world.notify() as notify:
        case_id, offer = await accepted_offer(world, notify, identifier="closed-then-withdrawn")
        assert (await notify.get(f"/offers/{offer['id']}/handoff", headers=provider("key-outreach"))).status_code == 200
        closed = await notify.post(f"/offers/{offer['id']}/outcomes", json={"outcome": "closed"},
                                   headers=provider("key-outreach"))
        assert closed.status_code == 200

        async def task_completed() -> bool:
            return (await world.task(case_id))["status"] == "completed"

        await eventually(task_completed)
        # Consent is still current for anything but a withdrawal once the case is finished...
        assert (await world.update_consent(case_id, fhir_consent(scopes=(ConsentScope.idva,)))).status_code == 409
        # ...and a withdrawal is always accepted.
        assert (await world.update_consent(case_id, withdrawal())).status_code == 200

        async def told_to_stop() -> bool:
            response = await notify.get(f"/offers/{offer['id']}", headers=provider("key-outreach"))
            return bool(response.json()["stop_contact"])

        await eventually(told_to_stop)
        stopped = (await notify.get(f"/offers/{offer['id']}", headers=provider("key-outreach"))).json()
        assert stopped["stop_contact_reason"] == "consent-withdrawn"
        [event] = [e for e in await world.published(OfferContactStopped.subject) if e.case_id == case_id]  # type: ignore[attr-defined]
        assert (event.offer_id, event.organisation_id, event.reason) == (UUID(offer["id"]), "org-outreach",
                                                                         "consent-withdrawn")
        async with notify.app.state.runtime.db.session() as session:
            hooks = (await session.exec(select(WebhookDelivery).where(WebhookDelivery.case_id == case_id))).all()
        assert "offer.contact-stop" in [h.event_type for h in hooks]
        assert (await notify.get(f"/offers/{offer['id']}/handoff", headers=provider("key-outreach"))).status_code == 410

        # The finished Task is not rewritten, and the identifying data is due for purge.
        assert (await world.task(case_id))["status"] == "completed"
        async with world.intake.state.runtime.db.session() as session:
            referral = await session.get(Referral, case_id)
        assert referral is not None and referral.purge_due_at is not None and referral.purged_at is None
        assert await purge_due(world.intake.state.runtime.db, now=referral.purge_due_at) == 1
        async with world.intake.state.runtime.db.session() as session:
            referral = await session.get(Referral, case_id)
            actions = [r.action for r in (await session.exec(select(AuditRecord).where(AuditRecord.case_id == case_id)
                                                              .order_by(col(AuditRecord.at)))).all()]
        assert referral is not None and referral.identifying == "" and referral.purged_at is not None
        assert actions == ["release-identifying-data", "update-consent", "purge-identifying-data"]


async def test_referral_cancelled_withdraws_pending_offers(world: World):
    async with world.notify() as notify:
        case_id = await world.refer(identifier="cancelled")
        await world.route(case_id, "outreach")
        offer = await offer_for(notify, "key-outreach", case_id)
        await world.probe.publish(ReferralCancelled(case_id=case_id, reason="entered in error"))

        async def withdrawn() -> bool:
            response = await notify.get(f"/offers/{offer['id']}", headers=provider("key-outreach"))
            return response.json()["status"] == "withdrawn"

        await eventually(withdrawn)
        assert (await notify.post(f"/offers/{offer['id']}/accept", headers=provider("key-outreach"))).status_code == 409
        assert (await notify.get(f"/offers/{offer['id']}/handoff", headers=provider("key-outreach"))).status_code == 410


async def test_polling_pages_by_cursor_and_filters_by_status_and_last_updated(world: World):
    async with world.notify() as notify:
        cases = [await world.refer(identifier=f"paging-{i}") for i in range(5)]
        for case_id in cases:
            await world.route(case_id, "outreach")
        for case_id in cases:
            await offer_for(notify, "key-outreach", case_id)

        seen: list[str] = []
        url: str | None = "/offers?_count=2"
        pages = 0
        while url:
            response = await notify.get(url, headers=provider("key-outreach"))
            assert response.status_code == 200
            seen += [o["id"] for o in response.json()]
            pages += 1
            link = response.headers.get("link")
            url = link[link.index("<") + 1 : link.index(">")] if link else None
        assert pages == 3 and len(seen) == len(set(seen)) == 5

        everything = (await notify.get("/offers", headers=provider("key-outreach"))).json()
        first, since = everything[0], everything[-1]["last_updated"]
        accepted = await notify.post(f"/offers/{first['id']}/accept", headers=provider("key-outreach"))
        changed = await notify.get("/offers", params={"_lastUpdated": f"gt{since}"}, headers=provider("key-outreach"))
        assert [o["id"] for o in changed.json()] == [first["id"]] == [accepted.json()["id"]]
        only_accepted = await notify.get("/offers", params={"status": "accepted"}, headers=provider("key-outreach"))
        assert [o["id"] for o in only_accepted.json()] == [first["id"]]
        assert (await notify.get("/offers", params={"_lastUpdated": "gtyesterday"},
                                 headers=provider("key-outreach"))).status_code == 400


async def test_consent_expiring_between_acceptance_and_the_handoff_read_stops_the_release(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    async with world.notify() as notify:
        case_id, offer = await accepted_offer(world, notify, identifier="expiring")
        consent = await world.consent_in_intake(case_id)
        assert consent.expires_at is not None  # the example's consent runs to the end of its period

        # The consent's period ends before the provider reads the handoff. Intake's clock first: its own
        # check refuses even while notify's copy still looks current.
        after_expiry = consent.expires_at + timedelta(minutes=1)
        monkeypatch.setattr("services.intake.api.utcnow", lambda: after_expiry)
        refused = await notify.get(f"/offers/{offer['id']}/handoff", headers=provider("key-outreach"))
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"] == "The handoff cannot be released: consent expired."
        # Notify's own gate says the same once its clock passes the expiry too.
        monkeypatch.setattr("services.notify.api.utcnow", lambda: after_expiry)
        refused = await notify.get(f"/offers/{offer['id']}/handoff", headers=provider("key-outreach"))
        assert refused.status_code == 403 and refused.json()["detail"].endswith("consent expired.")
        async with notify.app.state.runtime.db.session() as session:
            released = (await session.exec(select(AuditRecord).where(AuditRecord.case_id == case_id,
                                                                     AuditRecord.action == "release-handoff"))).all()
        assert released == []
