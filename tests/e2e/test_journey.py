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
    assert next(iter(body)) == "safe_contact" and "Do not leave voicemail" in body["safe_contact"]
    assert body["survivor"]["birth_date"] == "1990-04-01"
    assert body["survivor"]["address"][0]["postalCode"] == "LS7 9ZZ"

    final = poll(
        lambda: httpx.get(f"{intake}/fhir/Task/{task['id']}", headers=EHR_KEY).json(),
        lambda t: t["status"] == "accepted",
    )
    assert final["businessStatus"]["text"] == "accepted by Community outreach (sample)"


def test_no_identifying_data_in_any_log(system: System):
    """Runs after the journey: the services' logs must not hold the example's identifying details."""
    logs = "".join(p.read_text(errors="replace") for p in Path(system.log_dir).glob("*.log"))
    assert "POST /fhir/Bundle" in logs
    for identifying in ("Alex", "1990-04-01", "LS7 9ZZ", "07700 900123", "Synthetic Street"):
        assert identifying not in logs
