"""Every example Bundle in examples/, posted as an EHR would post it to the whole running system
(NATS and the four services as processes), is accepted, routed and offered; none leaves a trace of
its survivor in any log, on the happy path or on the error paths (422s, a dead letter, a 5xx).

Each test stands on its own (posting an example again is an idempotent replay), so any one of them
passes when run alone."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import nats
import pytest

from services.launcher import System, wait_until_ok
from tests.conftest import EXAMPLES
from tests.e2e.conftest import poll
from tests.e2e.test_journey import EHR_KEY, PROVIDER_KEY

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


def routed_task(system: System, path: Path) -> dict:
    """Post the example (again: a replay returns the same Task) and wait until the router answered."""
    return routed(system, submit(system, path))


def routed(system: System, posted: httpx.Response) -> dict:
    """The Task of a posted referral, once the router has answered."""
    assert posted.status_code == 202, posted.text
    task_url = f"{system.url('intake')}/fhir/Task/{posted.json()['id']}"
    return poll(lambda: httpx.get(task_url, headers=EHR_KEY).json(),  # type: ignore[no-any-return]
                lambda t: t["businessStatus"]["text"] != "received", timeout=30)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_is_accepted_and_routed_to_an_offer(system: System, path: Path):
    status = routed_task(system, path)["businessStatus"]["text"]
    assert status.startswith("offered to "), status
    for words in EXPECTED_OFFERS.get(path.name, ()):
        assert words in status, status


def test_the_referrer_finds_and_cancels_a_referral_by_its_own_identifier(system: System):
    intake = system.url("intake")
    routed_task(system, EXAMPLES / "by-and-for-deaf-bsl.json")  # the referral GP-REF-000077
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


def identifying_values(path: Path) -> tuple[str, ...]:
    patient = next(e["resource"] for e in json.loads(path.read_text())["entry"]
                   if e["resource"]["resourceType"] == "Patient")
    return (patient["birthDate"], patient["address"][0]["postalCode"], patient["address"][0]["line"][0],
            patient["name"][0]["family"], patient["telecom"][0]["value"])


def invalid_variants(path: Path) -> list[bytes]:
    """The example, still full of its survivor's details, made invalid in ways the profile catches."""
    variants = []
    for breakage in ("consent-status", "birth-date", "no-patient-reference"):
        body = json.loads(path.read_text())
        body["identifier"]["value"] = f"{body['identifier']['value']}-invalid-{breakage}"
        resources = [e["resource"] for e in body["entry"]]
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        if breakage == "consent-status":
            for consent in (r for r in resources if r["resourceType"] == "Consent"):
                consent["status"] = f"not-a-status {patient['name'][0]['family']}"
        elif breakage == "birth-date":
            patient["birthDate"] = f"{patient['birthDate']}T99"
        else:
            for resource in resources:
                if resource["resourceType"] == "ServiceRequest":
                    resource["subject"] = {"reference": f"Patient/{patient['address'][0]['postalCode']}"}
        variants.append(json.dumps(body).encode())
    return variants


async def dead_letter(system: System, subject: str, body: bytes) -> None:
    """Put an unreadable message on the bus, as a broken publisher would, and wait until the services'
    consumers have moved it to the dead-letter stream."""
    from shared.bus import DLQ_STREAM

    nc = await nats.connect(system.nats.url if system.nats else "")
    try:
        js = nc.jetstream()
        before = (await js.stream_info(DLQ_STREAM)).state.messages
        await js.publish(subject, body)
        deadline = asyncio.get_running_loop().time() + 30
        while (await js.stream_info(DLQ_STREAM)).state.messages <= before:
            assert asyncio.get_running_loop().time() < deadline, "the message was never dead-lettered"
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


def test_no_example_survivor_appears_in_any_log_even_on_error_paths(system: System):
    intake, notify = system.url("intake"), system.url("notify")
    for path in EXAMPLE_FILES:
        routed_task(system, path)
        # 422s: the profile's errors, with the survivor's details still in the body.
        for body in invalid_variants(path):
            rejected = httpx.post(f"{intake}/fhir/Bundle", content=body, headers=FHIR)
            assert rejected.status_code in (400, 422), rejected.text
        # A dead letter: an unreadable event that quotes the survivor, on a subject services consume.
        asyncio.run(dead_letter(system, "referral.received", json.dumps(
            {"case_id": "not-a-uuid", "name": identifying_values(path)}).encode()))
    # A 5xx: the directory is away, so notify cannot check a provider's key.
    system.stop_service("directory")
    try:
        unavailable = httpx.get(f"{notify}/offers", headers=PROVIDER_KEY)
        assert unavailable.status_code >= 500
    finally:
        system.start_service("directory")
        wait_until_ok(f"{system.url('directory')}/readyz", 60, system.processes["directory"])

    logs = "".join(p.read_text(errors="replace") for p in Path(system.log_dir).glob("*.log"))
    assert "POST /fhir/$process-message 202" in logs and "POST /fhir/Bundle 202" in logs
    assert "POST /fhir/Bundle 422" in logs and "dead-lettered" in logs
    assert "GET /offers 50" in logs
    for path in EXAMPLE_FILES:
        for value in identifying_values(path):
            assert value not in logs, f"{path.name}: identifying data in a log"


def gp_referral_in(postcode: str, reference: str) -> bytes:
    """The GP example, for a survivor at another (synthetic) address, under its own referral identifier."""
    body = json.loads((EXAMPLES / "gp-referral.json").read_text())
    for entry in body["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            resource["address"][0]["postalCode"] = postcode
        if resource["resourceType"] == "ServiceRequest":
            resource["identifier"][0]["value"] = reference
    body["identifier"]["value"] = reference
    return json.dumps(body).encode()


def routed_bundle(system: System, bundle: bytes) -> dict:
    return routed(system, httpx.post(f"{system.url('intake')}/fhir/Bundle", content=bundle, headers=FHIR))


@pytest.mark.parametrize(("postcode", "offered", "provider_key"), [
    ("LS7 3AB", "Community outreach (sample)", "pw_sample_aire_valley_da"),  # West Yorkshire
    ("E1 6AN", "Community outreach (sample)", "pw_sample_thames_gateway_da"),  # North East London
    ("TR1 1AA", "Community outreach, including outreach to the islands (sample)", "pw_sample_kernow_da"),  # Cornwall
])
def test_a_referral_in_each_sample_icb_reaches_that_areas_services(system: System, postcode, offered, provider_key):
    task = routed_bundle(system, gp_referral_in(postcode, f"GP-REF-ICB-{postcode.replace(' ', '')}"))
    assert task["businessStatus"]["text"] == f"offered to {offered}"
    offers = poll(lambda: httpx.get(f"{system.url('notify')}/offers",
                                    headers={"Authorization": f"Bearer {provider_key}"}).json(),
                  lambda found: any(o["case_id"] == task["id"] for o in found))
    [offer] = [o for o in offers if o["case_id"] == task["id"]]
    # The provider learns the sector and its areas, never the full postcode.
    assert postcode.split(" ")[0] in json.dumps(offer) and postcode not in json.dumps(offer)


@pytest.mark.parametrize(("postcode", "helpline", "why"), [
    ("CF10 1AA", "Live Fear Free Helpline (Wales)", "Postcode sector CF10 1 is in Wales"),
    ("EH1 1AA", "Scotland's Domestic Abuse and Forced Marriage Helpline", "Postcode sector EH1 1 is in Scotland"),
    ("ZZ9 9ZZ", "National Domestic Abuse Helpline", "Postcode sector ZZ9 9 is not in the gazetteer"),
])
def test_a_referral_outside_england_gets_its_nations_helpline_and_a_task_that_says_why(system: System, postcode,
                                                                                       helpline, why):
    task = routed_bundle(system, gp_referral_in(postcode, f"GP-REF-OUT-{postcode.replace(' ', '')}"))
    assert task["businessStatus"]["text"] == f"offered to {helpline}"
    assert task["statusReason"]["text"].startswith(why) and "ops have been told" in task["statusReason"]["text"]
