"""Every example Bundle in examples/, posted as an EHR would post it to the whole running system
(NATS and the four services as processes), is accepted, routed and offered; none leaves a trace of
its survivor in any log."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from services.launcher import System
from tests.conftest import EXAMPLES
from tests.e2e.conftest import poll
from tests.e2e.test_journey import EHR_KEY

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))
FHIR = {**EHR_KEY, "Content-Type": "application/fhir+json"}
# What the sample directory (Leeds) should offer each example, by words in the Task's business status.
EXPECTED_OFFERS = {
    "ed-high-risk-message.json": ("Health IDVA", "MARAC"),
    "high-risk-no-consent-safeguarding.json": ("MARAC",),
    "by-and-for-black-minoritised-maternity.json": ("Black and minoritised",),
}


def submit(system: System, path: Path) -> httpx.Response:
    body = json.loads(path.read_text())
    endpoint = "/fhir/$process-message" if body["type"] == "message" else "/fhir/Bundle"
    return httpx.post(f"{system.url('intake')}{endpoint}", content=path.read_bytes(), headers=FHIR)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_is_accepted_and_routed_to_an_offer(system: System, path: Path):
    posted = submit(system, path)
    assert posted.status_code == 202, posted.text
    task_url = f"{system.url('intake')}/fhir/Task/{posted.json()['id']}"
    task = poll(lambda: httpx.get(task_url, headers=EHR_KEY).json(),
                lambda t: t["businessStatus"]["text"] != "received", timeout=30)
    status = task["businessStatus"]["text"]
    assert status.startswith("offered to "), status
    for words in EXPECTED_OFFERS.get(path.name, ()):
        assert words in status, status


def test_the_referrer_finds_and_cancels_a_referral_by_its_own_identifier(system: System):
    intake = system.url("intake")
    found = httpx.get(f"{intake}/fhir/Task", params={"based-on:identifier":
                      "https://sample-ehr.example.org/referral-id|GP-REF-000077"}, headers=EHR_KEY).json()
    [entry] = found["entry"]
    cancellation = {
        "resourceType": "Bundle", "type": "collection",
        "identifier": {"system": "https://sample-ehr.example.org/cancel-id", "value": "CANCEL-77"},
        "entry": [{"resource": {
            "resourceType": "ServiceRequest", "status": "revoked", "intent": "order", "subject": {"display": "survivor"},
            "identifier": [{"system": "https://sample-ehr.example.org/referral-id", "value": "GP-REF-000077"}],
            "requester": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y00002"}},
        }}],
    }
    cancelled = httpx.post(f"{intake}/fhir/Bundle", json=cancellation, headers=FHIR)
    assert cancelled.status_code == 200 and cancelled.json()["id"] == entry["resource"]["id"]
    assert httpx.get(f"{intake}/fhir/Task/{entry['resource']['id']}", headers=EHR_KEY).json()["status"] == "cancelled"


def test_no_example_survivor_appears_in_any_log(system: System):
    logs = "".join(p.read_text(errors="replace") for p in Path(system.log_dir).glob("*.log"))
    assert "POST /fhir/$process-message 202" in logs and "POST /fhir/Bundle 202" in logs
    for path in EXAMPLE_FILES:
        patient = next(e["resource"] for e in json.loads(path.read_text())["entry"]
                       if e["resource"]["resourceType"] == "Patient")
        for value in (patient["birthDate"], patient["address"][0]["postalCode"], patient["address"][0]["line"][0],
                      patient["name"][0]["family"], patient["telecom"][0]["value"]):
            assert value not in logs, f"{path.name}: identifying data in a log"
