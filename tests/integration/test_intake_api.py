"""Intake's FHIR API in-process, with a real database (SQLite and PostgreSQL) and a real NATS."""

from __future__ import annotations

import asyncio
import json
from uuid import UUID

import pytest
from sqlalchemy import func
from sqlmodel import select

from services.intake.app import SAMPLE_CLIENT
from services.intake.store import Referral
from shared.bus import Bus
from shared.consent import CONSENT_REFUSAL
from shared.events import CaseStatus, ReferralReceived, TaskStatus
from shared.outbox import OutboxMessage
from tests.conftest import EXAMPLES
from tests.harness import as_service, eventually
from tests.integration.conftest import EHR, record_acceptance


def example() -> dict:
    return json.loads((EXAMPLES / "gp-referral.json").read_text())


async def referral_count(app) -> int:
    async with app.state.runtime.db.session() as session:
        return (await session.exec(select(func.count()).select_from(Referral))).one()


async def outbox_count(app) -> int:
    async with app.state.runtime.db.session() as session:
        return (await session.exec(select(func.count()).select_from(OutboxMessage))).one()


async def test_referral_is_stored_encrypted_and_announced_without_identifying_data(intake, nats_server):
    response = await intake.post("/fhir/Bundle", json=example(), headers=EHR)
    assert response.status_code == 202
    case_id = UUID(response.json()["id"])

    async with intake.app.state.runtime.db.session() as session:
        referral = await session.get(Referral, case_id)
    assert referral.identifying.startswith("k1:")
    assert "Example" not in referral.identifying and "LS7 9ZZ" not in referral.identifying

    bus = Bus(nats_server.url, name="probe")
    await bus.start()
    await bus.wait_ready(10)
    try:
        sub = await bus.js.pull_subscribe(ReferralReceived.subject, durable=None, stream="PATHWAYS")
        [message] = await sub.fetch(1, timeout=10)
        assert message.headers["Nats-Msg-Id"]
        event = ReferralReceived.model_validate_json(message.data)
        assert event.case_id == case_id and event.summary.postcode_district == "LS7"
        for identifying in (b"Example", b"Alex", b"1990-04-01", b"9ZZ", b"07700", b"voicemail"):
            assert identifying not in message.data
    finally:
        await bus.close()


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{not json", "application/fhir+json", 400, "structure"),
        (b"[]", "application/fhir+json", 400, "structure"),
        (b"{}", "text/plain", 415, "not-supported"),
        (json.dumps({"resourceType": "Patient"}).encode(), "application/fhir+json", 422, "structure"),
        (b"x" * 200_001, "application/fhir+json", 413, "too-costly"),
    ],
)
async def test_bad_requests_get_an_operation_outcome_and_change_nothing(intake, content, content_type, status, code):
    response = await intake.post("/fhir/Bundle", content=content, headers={**EHR, "Content-Type": content_type})
    assert response.status_code == status
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == code and outcome["issue"][0]["severity"] == "error"
    assert await referral_count(intake.app) == 0 and await outbox_count(intake.app) == 0


async def test_profile_violation_lists_each_problem_with_its_expression(intake):
    body = example()
    body["entry"][1]["resource"]["address"][0]["postalCode"] = "nowhere"
    del body["entry"][0]["resource"]["requester"]
    response = await intake.post("/fhir/Bundle", json=body, headers=EHR)
    assert response.status_code == 422
    expressions = [i["expression"][0] for i in response.json()["issue"]]
    assert "Bundle.entry[0].resource.requester.identifier" in expressions
    assert "Bundle.entry[1].resource.address.postalCode" in expressions
    assert await referral_count(intake.app) == 0


async def test_credentials_are_required_and_bound_to_ods_codes(intake):
    assert (await intake.post("/fhir/Bundle", json=example())).status_code == 401
    wrong = await intake.post("/fhir/Bundle", json=example(), headers={**EHR, "Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["resourceType"] == "OperationOutcome"
    body = example()
    body["entry"][0]["resource"]["requester"]["identifier"]["value"] = "Z99999"
    assert (await intake.post("/fhir/Bundle", json=body, headers=EHR)).status_code == 403
    assert await referral_count(intake.app) == 0


async def test_retries_return_the_original_answer_even_when_they_race(intake, racing_retries):
    race = racing_retries(5)
    responses = await asyncio.gather(*(intake.post("/fhir/Bundle", json=example(), headers=EHR) for _ in range(5)))
    assert race.entered == 5 and race.replays == 4  # the four losers replayed after the unique key refused them
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await referral_count(intake.app) == 1 and await outbox_count(intake.app) == 1

    changed = example()
    changed["entry"][3]["resource"]["extension"][0]["valueInteger"] = 15
    conflict = await intake.post("/fhir/Bundle", json=changed, headers=EHR)
    assert conflict.status_code == 409 and conflict.json()["issue"][0]["expression"] == ["Bundle.identifier"]


async def test_task_follows_case_status_and_is_private_to_its_client(intake, nats_server):
    task_id = (await intake.post("/fhir/Bundle", json=example(), headers=EHR)).json()["id"]
    bus = Bus(nats_server.url, name="probe")
    await bus.start()
    await bus.wait_ready(10)
    try:
        await bus.publish(CaseStatus(case_id=UUID(task_id), status=TaskStatus.accepted, business_status="accepted by X"))

        async def accepted() -> bool:
            task = (await intake.get(f"/fhir/Task/{task_id}", headers=EHR)).json()
            return task["status"] == "accepted"

        await eventually(accepted)
    finally:
        await bus.close()
    missing = await intake.get("/fhir/Task/not-a-task", headers=EHR)
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"


async def test_handoff_details_only_for_services_and_every_read_is_audited(intake):
    task_id = (await intake.post("/fhir/Bundle", json=example(), headers=EHR)).json()["id"]
    path = f"/internal/referrals/{task_id}/handoff?organisation_id=org-1&service_type=community-outreach&consent_version=1"
    assert (await intake.get(path, headers={"Authorization": "Bearer wrong"})).status_code == 403
    assert (await intake.get(path, headers={"Authorization": f"Bearer {SAMPLE_CLIENT['api_key']}"})).status_code == 403
    await record_acceptance(intake.app, task_id, "org-1")
    details = await intake.get(path, headers=as_service("notify"))
    assert details.status_code == 200 and details.json()["birth_date"] == "1990-04-01"

    # Intake checks its own consent: the example's does not reach an IDVA, and only intake numbers versions.
    service = as_service("notify")
    outside = await intake.get(path.replace("community-outreach", "idva"), headers=service)
    assert outside.status_code == 403 and outside.json()["type"] == CONSENT_REFUSAL
    assert outside.json()["detail"] == "The handoff cannot be released: consent does not cover idva."
    unissued = await intake.get(path.replace("consent_version=1", "consent_version=2"), headers=service)
    assert unissued.status_code == 409 and "never issued" in unissued.json()["detail"]

    from shared.audit import AuditRecord

    async with intake.app.state.runtime.db.session() as session:
        audits = (await session.exec(select(AuditRecord).where(AuditRecord.case_id != None))).all()  # noqa: E711
    assert [(a.action, str(a.case_id), a.detail) for a in audits] == [
        ("release-identifying-data", task_id,
         "to organisation org-1; consent covers specialist-da-service; consent version 1")
    ]


async def test_probes(intake):
    assert (await intake.get("/healthz")).json()["status"] == "ok"
    ready = await intake.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": True, "bus": True}
