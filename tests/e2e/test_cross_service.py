"""Journeys that cross every service, as real processes: a provider declines and the router offers the
case on; the survivor withdraws consent after the handoff and the provider is told to stop."""

from __future__ import annotations

import json

import httpx

from services.launcher import System
from tests.conftest import EXAMPLES
from tests.e2e.conftest import poll
from tests.e2e.test_journey import EHR_KEY, PROVIDER_KEY

FHIR = {**EHR_KEY, "Content-Type": "application/fhir+json"}


def referral(identifier: str) -> dict:
    bundle = json.loads((EXAMPLES / "gp-referral.json").read_text())
    bundle["identifier"]["value"] = identifier
    return bundle


def offer_for(system: System, case_id: str, key: dict) -> dict:
    offers = poll(lambda: httpx.get(f"{system.url('notify')}/offers", headers=key).json(),
                  lambda o: any(x["case_id"] == case_id for x in o))
    return next(x for x in offers if x["case_id"] == case_id)


def test_a_declined_offer_is_answered_by_the_router_and_nothing_is_dropped(system: System):
    intake, notify, router = system.url("intake"), system.url("notify"), system.url("router")
    case_id = httpx.post(f"{intake}/fhir/Bundle", json=referral("GP-REF-E2E-DECLINE"), headers=FHIR).json()["id"]
    first = offer_for(system, case_id, PROVIDER_KEY)

    declined = httpx.post(f"{notify}/offers/{first['id']}/decline", json={"reason": "no-capacity"},
                          headers=PROVIDER_KEY)
    assert declined.status_code == 200 and declined.json()["status"] == "declined"

    # In the sample directory the only community service for this survivor in Leeds is the one that
    # declined: the router finds the ranking exhausted and the case goes to ops, not nowhere.
    task = poll(lambda: httpx.get(f"{intake}/fhir/Task/{case_id}", headers=EHR_KEY).json(),
                lambda t: t["businessStatus"]["coding"][0]["code"] == "escalated-to-ops", timeout=30)
    assert task["status"] == "requested"
    ops = {"Authorization": f"Bearer {system.environment()['PATHWAYS_OPS_KEY']}"}
    decision = httpx.get(f"{router}/cases/{case_id}/decision", headers=ops).json()
    assert decision["state"] == "exhausted" and decision["offered"] == ["aire-valley-da-outreach"]
    assert "declined (no-capacity)" in decision["note"]
    queue = poll(lambda: httpx.get(f"{notify}/ops/escalations", headers=ops).json(),
                 lambda q: any(e["case_id"] == case_id for e in q))
    assert "exhausted" in next(e for e in queue if e["case_id"] == case_id)["reason"]


def test_consent_withdrawn_after_the_handoff_stops_the_provider(system: System):
    intake, notify = system.url("intake"), system.url("notify")
    bundle = referral("GP-REF-E2E-WITHDRAW")
    case_id = httpx.post(f"{intake}/fhir/Bundle", json=bundle, headers=FHIR).json()["id"]
    offer = offer_for(system, case_id, PROVIDER_KEY)
    assert httpx.post(f"{notify}/offers/{offer['id']}/accept", headers=PROVIDER_KEY).status_code == 200
    assert httpx.get(f"{notify}/offers/{offer['id']}/handoff", headers=PROVIDER_KEY).status_code == 200

    consent = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Consent")
    consent["status"] = "inactive"
    assert httpx.put(f"{intake}/fhir/Consent/{case_id}", json=consent, headers=FHIR).status_code == 200

    gone = poll(lambda: httpx.get(f"{notify}/offers/{offer['id']}/handoff", headers=PROVIDER_KEY),
                lambda r: r.status_code == 410)
    assert "withdrew consent" in gone.json()["detail"] or "consent" in gone.json()["detail"]
    stopped = httpx.get(f"{notify}/offers/{offer['id']}", headers=PROVIDER_KEY).json()
    assert stopped["stop_contact"] is True
    task = poll(lambda: httpx.get(f"{intake}/fhir/Task/{case_id}", headers=EHR_KEY).json(),
                lambda t: t["status"] == "cancelled")
    assert task["statusReason"]
