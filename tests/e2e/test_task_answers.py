"""The referrer's Task gives an answer people can rely on (issue 12), with NATS and the four services as
real processes: a lower-risk referral whose consent was refused is ``rejected`` with coded reasons (the
EHR stops polling), and a routed referral's Task carries the router's summary of why. Synthetic people."""

from __future__ import annotations

import json

import httpx

from services.launcher import System
from tests.conftest import EXAMPLES
from tests.e2e.conftest import poll

EHR = {"Authorization": "Bearer pw_sample_ehr_client", "Content-Type": "application/fhir+json"}


def bundle(identifier: str, *, consent_status: str | None = None) -> dict:
    body = json.loads((EXAMPLES / "gp-referral.json").read_text())
    body["identifier"]["value"] = identifier
    if consent_status is not None:
        consent = next(e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Consent")
        consent["status"] = consent_status
    return body


def test_consent_refused_at_standard_risk_is_a_final_rejected_task_with_coded_reasons(system: System):
    intake = system.url("intake")
    sent = bundle("GP-REF-E2E-REFUSED", consent_status="rejected")
    posted = httpx.post(f"{intake}/fhir/Bundle", json=sent, headers=EHR)
    assert posted.status_code == 202, posted.text
    task_id = posted.json()["id"]

    task = poll(lambda: httpx.get(f"{intake}/fhir/Task/{task_id}", headers=EHR).json(),
                lambda t: t["status"] != "requested")
    assert task["status"] == "rejected"
    assert task["businessStatus"]["coding"][0]["code"] == "no-offer"
    assert task["statusReason"]["coding"][0]["code"] == "consent-refused"
    assert "Advice:" in task["statusReason"]["text"]
    assert task["note"][0]["text"].startswith("No offer made: consent refused")
    patient = next(e["resource"] for e in sent["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["name"][0]["family"] not in json.dumps(task)

    # Final means final: only a withdrawal of consent is accepted now.
    consent = next(e["resource"] for e in sent["entry"] if e["resource"]["resourceType"] == "Consent")
    consent["status"] = "active"
    assert httpx.put(f"{intake}/fhir/Consent/{task_id}", json=consent, headers=EHR).status_code == 409


def test_a_routed_referrals_task_carries_the_routing_summary(system: System):
    intake = system.url("intake")
    posted = httpx.post(f"{intake}/fhir/Bundle", json=bundle("GP-REF-E2E-SUMMARY"), headers=EHR)
    assert posted.status_code == 202, posted.text
    task = poll(lambda: httpx.get(f"{intake}/fhir/Task/{posted.json()['id']}", headers=EHR).json(),
                lambda t: t["businessStatus"]["coding"][0]["code"] == "offered")
    [note] = task["note"]
    assert note["text"].startswith("Offered to a community specialist service")
    # Other organisations' internals (who was excluded or passed over, and why) are not the referrer's.
    for internal in ("excluded", "passed over", "capacity", "paused"):
        assert internal not in note["text"]
