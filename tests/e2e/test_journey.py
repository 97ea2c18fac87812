"""One referral's whole journey, with NATS and the four services as real processes, driven as an EHR
and a provider would drive them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from services.launcher import System
from tests.conftest import EXAMPLES
from tests.e2e.conftest import poll

EHR_KEY = {"Authorization": "Bearer pw_sample_ehr_client"}
PROVIDER_KEY = {"Authorization": "Bearer pw_sample_aire_valley_da"}
OTHER_PROVIDER_KEY = {"Authorization": "Bearer pw_sample_kinara"}


def test_referral_is_offered_accepted_handed_off_and_the_task_follows(system: System):
    intake, notify = system.url("intake"), system.url("notify")
    bundle = (EXAMPLES / "gp-referral.json").read_bytes()

    posted = httpx.post(
        f"{intake}/fhir/Bundle", content=bundle, headers={**EHR_KEY, "Content-Type": "application/fhir+json"}
    )
    assert posted.status_code == 202, posted.text
    task = posted.json()
    assert task["resourceType"] == "Task" and task["status"] == "requested"
    assert posted.headers["Location"] == f"/fhir/Task/{task['id']}"

    # The EHR retries (a timeout on its side): same Task, nothing new.
    retried = httpx.post(
        f"{intake}/fhir/Bundle", content=bundle, headers={**EHR_KEY, "Content-Type": "application/fhir+json"}
    )
    assert retried.status_code == 202 and retried.json()["id"] == task["id"]

    offers = poll(lambda: httpx.get(f"{notify}/offers", headers=PROVIDER_KEY).json(), lambda o: len(o) == 1)
    offer = offers[0]
    assert offer["case_id"] == task["id"] and offer["status"] == "offered"
    assert "serves Leeds (E08000035)" in offer["reasons"]
    # The offer is non-identifying.
    assert "Example" not in json.dumps(offer) and "9ZZ" not in json.dumps(offer)

    # No handoff before acceptance; another provider cannot see the offer at all.
    assert httpx.get(f"{notify}/offers/{offer['id']}/handoff", headers=PROVIDER_KEY).status_code == 409
    assert httpx.get(f"{notify}/offers/{offer['id']}", headers=OTHER_PROVIDER_KEY).status_code == 404
    assert httpx.get(f"{notify}/offers", headers=OTHER_PROVIDER_KEY).json() == []

    accepted = httpx.post(f"{notify}/offers/{offer['id']}/accept", headers=PROVIDER_KEY)
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"

    handoff = httpx.get(f"{notify}/offers/{offer['id']}/handoff", headers=PROVIDER_KEY)
    assert handoff.status_code == 200, handoff.text
    body = handoff.json()
    assert next(iter(body)) == "safe_contact" and "Do not leave voicemail" in body["safe_contact"]["instructions"]
    assert body["safe_contact"]["no_voicemail"] is True and "no-voicemail" in body["safe_contact"]["flags"]
    assert body["survivor"]["birth_date"] == "1990-04-01"
    assert body["survivor"]["address"][0]["postalCode"] == "LS7 9ZZ"

    final = poll(
        lambda: httpx.get(f"{intake}/fhir/Task/{task['id']}", headers=EHR_KEY).json(),
        lambda t: t["status"] == "accepted",
    )
    assert final["businessStatus"]["text"] == "accepted by Community outreach (sample)"

    # The provider reports contact: the referrer's Task moves on and lists the outcome.
    reported = httpx.post(f"{notify}/offers/{offer['id']}/outcomes", json={"outcome": "contact-made"},
                          headers=PROVIDER_KEY)
    assert reported.status_code == 200, reported.text
    in_progress = poll(
        lambda: httpx.get(f"{intake}/fhir/Task/{task['id']}", headers=EHR_KEY).json(),
        lambda t: t["status"] == "in-progress",
    )
    assert in_progress["businessStatus"]["coding"][0]["code"] == "contact-made"
    assert [o["valueCodeableConcept"]["coding"][0]["code"] for o in in_progress["output"]] == ["contact-made"]
    changed = httpx.get(f"{intake}/fhir/Task", params={"_lastUpdated": f"ge{final['meta']['lastUpdated']}"},
                        headers=EHR_KEY).json()
    assert [e["resource"]["id"] for e in changed["entry"]] == [task["id"]]


def test_high_risk_case_without_consent_is_escalated_assigned_by_ops_and_still_gated_at_release(system: System):
    intake, notify = system.url("intake"), system.url("notify")
    ops = {"Authorization": f"Bearer {system.environment()['PATHWAYS_OPS_KEY']}"}
    bundle = json.loads((EXAMPLES / "gp-referral.json").read_text())
    bundle["identifier"]["value"] = "GP-REF-E2E-NO-CONSENT"
    consent = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Consent")
    consent["status"] = "rejected"
    # High risk, consent refused, no recorded safeguarding basis: nothing may be offered, and ops must
    # look (a lower-risk case without consent waits with its Task saying why, and is not escalated).
    risk = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "RiskAssessment")
    risk["extension"][0]["valueInteger"] = 16
    posted = httpx.post(f"{intake}/fhir/Bundle", json=bundle,
                        headers={**EHR_KEY, "Content-Type": "application/fhir+json"})
    assert posted.status_code == 202, posted.text
    case_id = posted.json()["id"]

    # The router found no offer it may make: the case is in the ops queue, not dropped.
    queue = poll(lambda: httpx.get(f"{notify}/ops/escalations", headers=ops).json(),
                 lambda q: any(e["case_id"] == case_id for e in q))
    escalation = next(e for e in queue if e["case_id"] == case_id)
    assert "consent refused and no recorded safeguarding basis" in escalation["reason"]
    assert httpx.get(f"{notify}/ops/escalations", headers=PROVIDER_KEY).status_code == 401

    assigned = httpx.post(f"{notify}/ops/escalations/{escalation['id']}/assign",
                          json={"service_id": "aire-valley-da-outreach"}, headers=ops)
    assert assigned.status_code == 201, assigned.text
    offer = poll(lambda: httpx.get(f"{notify}/offers", headers=PROVIDER_KEY).json(),
                 lambda o: any(x["case_id"] == case_id for x in o))
    offer = next(x for x in offer if x["case_id"] == case_id)
    assert httpx.post(f"{notify}/offers/{offer['id']}/accept", headers=PROVIDER_KEY).status_code == 200
    # Assigned by hand or not, identifying data is released only as consent allows.
    refused = httpx.get(f"{notify}/offers/{offer['id']}/handoff", headers=PROVIDER_KEY)
    assert refused.status_code == 403 and "consent refused" in refused.json()["detail"]
    detail = httpx.get(f"{notify}/ops/escalations/{escalation['id']}", headers=ops).json()
    assert [h["action"] for h in detail["history"]] == ["assign-service", "accept-offer"]


def test_no_identifying_data_in_any_log(system: System):
    """Runs after the journey: the services' logs must not hold the example's identifying details."""
    logs = "".join(p.read_text(errors="replace") for p in Path(system.log_dir).glob("*.log"))
    assert "POST /fhir/Bundle" in logs
    for identifying in ("Alex", "1990-04-01", "LS7 9ZZ", "07700 900123", "Synthetic Street"):
        assert identifying not in logs
