"""Offer deadlines that survive a restart, and the ops queue: escalation, reading the case's decision and
history, assigning a named service by hand, notes; every ops action audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest
from sqlmodel import select

from services.launcher import NatsServer
from services.notify.store import CaseConsent
from shared.audit import AuditRecord
from shared.events import CaseEscalated, OfferExpired, OfferMade
from tests.harness import eventually
from tests.integration.notify_world import OPS, World, offer_for, provider, world_for


@pytest.fixture
async def world(nats_server: NatsServer, database_url: str, tmp_path: Path, encryption_keys: str) -> AsyncIterator[World]:
    async with world_for(nats_server.url, database_url, tmp_path, encryption_keys) as w:
        yield w


async def test_overdue_offer_expires_after_a_restart_and_the_router_is_told(world: World):
    # High risk answers within no time at all here; the first notify's timer never looks again.
    async with world.notify(deadline_hours_high=0.0, sla_check_seconds=3600) as notify:
        case_id = await world.refer(identifier="deadline")
        await world.route(case_id, "idva")
        offer = await offer_for(notify, "key-idva", case_id)
        assert offer["respond_by"] == offer["created_at"]
        assert offer["status"] == "offered"
    # The deadline is in the database: the next notify expires the offer as it starts.
    async with world.notify(deadline_hours_high=0.0, sla_check_seconds=3600) as notify:
        async def expired() -> bool:
            response = await notify.get(f"/offers/{offer['id']}", headers=provider("key-idva"))
            return response.json()["status"] == "expired"

        await eventually(expired)
        assert (await notify.post(f"/offers/{offer['id']}/accept", headers=provider("key-idva"))).status_code == 409

        async def announced() -> bool:
            return any(e.offer_id == UUID(offer["id"]) for e in await world.published(OfferExpired.subject))  # type: ignore[attr-defined]

        await eventually(announced)
        [event] = [e for e in await world.published(OfferExpired.subject) if e.case_id == case_id]  # type: ignore[attr-defined]
        assert (event.service_id, event.organisation_id, event.reason) == ("svc-idva", "org-idva", "no-response")
        # The router answers with the next service: a new offer, on the same case, to someone else.
        await world.route(case_id, "outreach")
        await offer_for(notify, "key-outreach", case_id)


async def test_escalated_case_is_listed_read_assigned_by_hand_and_noted_with_every_action_audited(world: World):
    world.directory.services["svc-refuge"] = {
        "id": "svc-refuge", "organisation_id": "org-outreach", "name": "Refuge (synthetic)",
        "service_type": "refuge", "by_and_for": [], "organisation_by_and_for": [],
    }
    async with world.notify() as notify:
        case_id = await world.refer(identifier="escalated")

        async def known() -> bool:
            async with notify.app.state.runtime.db.session() as session:
                return await session.get(CaseConsent, case_id) is not None

        await eventually(known)  # notify heard referral.received: it has the summary to offer from
        await world.probe.publish(CaseEscalated(case_id=case_id, reason="no local service matches"))

        async def listed() -> list:
            return (await notify.get("/ops/escalations", headers=OPS)).json()

        await eventually(lambda: _non_empty(listed))
        [escalation] = await listed()
        assert escalation["case_id"] == str(case_id) and escalation["status"] == "open"
        assert (await notify.get("/ops/escalations", headers=provider("key-outreach"))).status_code == 401

        note = await notify.post(f"/ops/escalations/{escalation['id']}/notes",
                                 json={"text": "Checked with the area's refuge; they can take it."}, headers=OPS)
        assert note.status_code == 201 and note.json()["author"] == "ops-alex"
        assert (await notify.post(f"/ops/escalations/{escalation['id']}/assign", json={"service_id": "svc-nowhere"},
                                  headers=OPS)).status_code == 404
        assigned = await notify.post(f"/ops/escalations/{escalation['id']}/assign", json={"service_id": "svc-refuge"},
                                     headers=OPS)
        assert assigned.status_code == 201, assigned.text
        assert assigned.json()["assigned_by"] == "ops-alex"

        # The provider sees a normal offer, with why it was chosen.
        offer = await offer_for(notify, "key-outreach", case_id)
        assert offer["service_id"] == "svc-refuge" and offer["reasons"] == ["assigned by hand by ops-alex"]

        detail = (await notify.get(f"/ops/escalations/{escalation['id']}", headers=OPS)).json()
        assert detail["escalation"]["status"] == "assigned"
        assert detail["escalation"]["assigned_service_id"] == "svc-refuge"
        assert detail["summary"]["postcode_district"] == "LS7"
        assert [n["text"] for n in detail["notes"]] == ["Checked with the area's refuge; they can take it."]
        assert [o["service_id"] for o in detail["offers"]] == ["svc-refuge"]
        assert [h["action"] for h in detail["history"]] == ["add-note", "assign-service"]

        async with notify.app.state.runtime.db.session() as session:
            actions = [r.action for r in (await session.exec(
                select(AuditRecord).where(AuditRecord.actor_id == "ops-alex").order_by(AuditRecord.at)
            )).all()]
        assert actions[-4:] == ["list-escalations", "add-note", "assign-service", "read-escalation"]
        # The notes' text never reaches the audit trail or the bus.
        made = [e for e in await world.published(OfferMade.subject) if e.case_id == case_id]  # type: ignore[attr-defined]
        assert [e.reason for e in made] == ["assigned-by-ops"]


async def _non_empty(fetch) -> bool:  # type: ignore[no-untyped-def]
    return bool(await fetch())
