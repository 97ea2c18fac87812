"""Intake's referral lifecycle over HTTP, with a real database (SQLite and PostgreSQL) and a real NATS:
every example accepted at its endpoint, X-Request-Id idempotency under racing retries, Task search
confined to the client's own referrals, cancellation and consent updates reaching the bus."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import pytest
from sqlalchemy import func, update
from sqlmodel import select

from services.intake.clients import ClientCreate, register
from services.intake.store import ApiClient, IdempotencyRecord, Referral
from shared.bus import EVENTS_STREAM, Bus
from shared.credentials import SAMPLE_DATA, revoke
from shared.events import ConsentStatus, ConsentUpdated, Event, ReferralCancelled, ReferralReceived
from shared.outbox import OutboxMessage
from tests.conftest import EXAMPLES
from tests.harness import eventually
from tests.integration.conftest import EHR

OTHER_KEY = "pw_test_other_ehr"
OTHER = {**EHR, "Authorization": f"Bearer {OTHER_KEY}"}


def load(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def endpoint(body: dict) -> str:
    return "/fhir/$process-message" if body["type"] == "message" else "/fhir/Bundle"


async def count(app, table) -> int:
    async with app.state.runtime.db.session() as session:
        return (await session.exec(select(func.count()).select_from(table))).one()


async def add_other_client(app, *, active: bool = True) -> None:
    async with app.state.runtime.db.transaction() as session:
        body = ClientCreate(id="other-ehr", name="Another EHR (test)", ods_codes=["Y00001"])
        await register(session, SAMPLE_DATA, body, api_key=OTHER_KEY)
        if not active:
            await revoke(session, await session.get(ApiClient, "other-ehr"))


async def published(nats_url: str, subject: str, expected: int) -> list[Event]:
    """The events on a subject, once ``expected`` of them are in the stream."""
    bus = Bus(nats_url, name="probe")
    await bus.start()
    await bus.wait_ready(10)
    try:
        async def arrived() -> bool:
            info = await bus.js.stream_info(EVENTS_STREAM, subjects_filter=subject)
            return (info.state.subjects or {}).get(subject, 0) >= expected

        await eventually(arrived)
        sub = await bus.js.pull_subscribe(subject, durable=None, stream=EVENTS_STREAM)
        messages = await sub.fetch(expected, timeout=10)
        from shared.events import decode_event

        return [decode_event(subject, m.data) for m in messages]
    finally:
        await bus.close()


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
async def test_every_example_is_accepted_at_its_endpoint(intake, name):
    body = load(name)
    response = await intake.post(endpoint(body), json=body, headers=EHR)
    assert response.status_code == 202, response.text
    task = response.json()
    assert task["resourceType"] == "Task" and task["status"] == "requested"
    assert response.headers["Location"] == f"/fhir/Task/{task['id']}"
    assert task["basedOn"][0]["reference"] == f"ServiceRequest/{task['id']}"


async def test_a_message_bundle_is_refused_at_the_bundle_endpoint(intake):
    response = await intake.post("/fhir/Bundle", json=load("ed-high-risk-message.json"), headers=EHR)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Bundle.type"]
    assert await count(intake.app, Referral) == 0


async def test_racing_retries_with_the_same_request_id_create_one_referral(intake, racing_retries):
    body = load("gp-referral.json")
    del body["identifier"]  # only the header makes these retries
    headers = {**EHR, "X-Request-Id": "ehr-attempt-7f3a"}
    race = racing_retries(8)
    responses = await asyncio.gather(*(intake.post("/fhir/Bundle", json=body, headers=headers) for _ in range(8)))
    # The race path ran: all eight wrote at once, and the seven losers replayed after their insert failed.
    assert race.entered == 8 and race.replays == 7
    assert [r.status_code for r in responses] == [202] * 8
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("X-Idempotent-Replay") == "true" for r in responses) == 7
    assert await count(intake.app, Referral) == 1 and await count(intake.app, OutboxMessage) == 1

    body["entry"][3]["resource"]["extension"][0]["valueInteger"] = 2
    conflict = await intake.post("/fhir/Bundle", json=body, headers=headers)
    assert conflict.status_code == 409 and "X-Request-Id" in conflict.json()["issue"][0]["diagnostics"]
    # Another client's request ids are its own.
    await add_other_client(intake.app)
    assert (await intake.post("/fhir/Bundle", json=body, headers={**OTHER, "X-Request-Id": "ehr-attempt-7f3a"})
            ).status_code == 202
    assert await count(intake.app, Referral) == 2


async def test_a_retry_of_a_request_the_previous_release_recorded_is_replayed(intake):
    """Across an upgrade: the first answer was recorded under the previous release's fingerprint (the
    standard library's canonical JSON); the retry, arriving after, still gets it and stores nothing."""
    body = load("gp-referral.json")
    del body["identifier"]
    headers = {**EHR, "X-Request-Id": "ehr-before-upgrade"}
    first = await intake.post("/fhir/Bundle", json=body, headers=headers)
    assert first.status_code == 202
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    previous = hashlib.sha256(f"bundle\n{canonical}".encode()).hexdigest()
    async with intake.app.state.runtime.db.session() as session, session.begin():
        await session.exec(update(IdempotencyRecord).values(request_hash=previous))
    retried = await intake.post("/fhir/Bundle", json=body, headers=headers)
    assert retried.status_code == 202 and retried.headers.get("X-Idempotent-Replay") == "true"
    assert retried.json()["id"] == first.json()["id"]
    assert await count(intake.app, Referral) == 1
    body["entry"][3]["resource"]["extension"][0]["valueInteger"] = 2
    assert (await intake.post("/fhir/Bundle", json=body, headers=headers)).status_code == 409


async def test_tasks_are_found_by_the_referral_they_are_based_on_and_only_by_their_client(intake):
    await add_other_client(intake.app)
    mine = (await intake.post("/fhir/Bundle", json=load("gp-referral.json"), headers=EHR)).json()
    theirs = (await intake.post("/fhir/Bundle", json=load("gp-referral.json"), headers=OTHER)).json()
    assert mine["id"] != theirs["id"]

    found = (await intake.get("/fhir/Task", params={"based-on": f"ServiceRequest/{mine['id']}"}, headers=EHR)).json()
    assert found["type"] == "searchset" and [e["resource"]["id"] for e in found["entry"]] == [mine["id"]]
    by_identifier = await intake.get(
        "/fhir/Task", params={"based-on:identifier": "https://sample-ehr.example.org/referral-id|GP-REF-000001"},
        headers=EHR,
    )
    assert [e["resource"]["id"] for e in by_identifier.json()["entry"]] == [mine["id"]]
    # The other client's Task is invisible: not in a search, "not found" when read.
    assert (await intake.get("/fhir/Task", params={"based-on": theirs["id"]}, headers=EHR)).json()["total"] == 0
    assert (await intake.get(f"/fhir/Task/{theirs['id']}", headers=EHR)).status_code == 404
    assert (await intake.get("/fhir/Task", params={"based-on": "nonsense"}, headers=EHR)).json()["total"] == 0


async def test_a_revoked_client_is_refused(intake):
    await add_other_client(intake.app, active=False)
    response = await intake.post("/fhir/Bundle", json=load("gp-referral.json"), headers=OTHER)
    assert response.status_code == 401 and response.json()["resourceType"] == "OperationOutcome"


def cancellation(**service_request: object) -> dict:
    return {
        "resourceType": "Bundle", "type": "collection",
        "identifier": {"system": "https://sample-ehr.example.org/cancel-id", "value": "CANCEL-1"},
        "entry": [{"resource": {
            "resourceType": "ServiceRequest", "status": "revoked", "intent": "order", "subject": {"display": "survivor"},
            "requester": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y00001"}},
            "extension": [{"url": "https://pathways.example.org/fhir/StructureDefinition/cancellation-reason",
                           "valueCode": "survivor-request"}],
            **service_request,
        }}],
    }


async def test_cancelling_a_referral_cancels_its_task_and_tells_router_and_notify(intake, nats_server):
    task = (await intake.post("/fhir/Bundle", json=load("gp-referral.json"), headers=EHR)).json()
    await add_other_client(intake.app)
    by_identifier = cancellation(identifier=[{"system": "https://sample-ehr.example.org/referral-id",
                                              "value": "GP-REF-000001"}])
    # Another client cannot cancel it.
    assert (await intake.post("/fhir/Bundle", json=by_identifier, headers=OTHER)).status_code == 404

    cancelled = await intake.post("/fhir/Bundle", json=by_identifier, headers=EHR)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["statusReason"]["text"] == "survivor-request"
    assert (await intake.get(f"/fhir/Task/{task['id']}", headers=EHR)).json()["status"] == "cancelled"
    # By the Task's ServiceRequest id, under a new Bundle id: already cancelled, nothing new happens.
    again = cancellation(id=task["id"])
    again["identifier"]["value"] = "CANCEL-2"
    assert (await intake.post("/fhir/Bundle", json=again, headers=EHR)).json()["status"] == "cancelled"

    [event] = await published(nats_server.url, ReferralCancelled.subject, 1)
    assert isinstance(event, ReferralCancelled) and event.case_id == UUID(task["id"])
    assert event.reason == "survivor-request"
    unknown = cancellation(id="00000000-0000-4000-8000-000000000000")
    unknown["identifier"]["value"] = "CANCEL-3"
    assert (await intake.post("/fhir/Bundle", json=unknown, headers=EHR)).status_code == 404


async def test_a_consent_update_is_stored_and_announced_once(intake, nats_server):
    task = (await intake.post("/fhir/Bundle", json=load("gp-referral.json"), headers=EHR)).json()
    consent = next(e["resource"] for e in load("gp-referral.json")["entry"] if e["resource"]["resourceType"] == "Consent")
    consent["status"] = "inactive"  # the survivor withdrew

    for _ in range(2):  # the second PUT changes nothing and announces nothing
        response = await intake.put(f"/fhir/Consent/{task['id']}", json=consent, headers=EHR)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == task["id"]
    async with intake.app.state.runtime.db.session() as session:
        assert (await session.get(Referral, UUID(task["id"]))).consent["status"] == ConsentStatus.withdrawn

    received, [updated] = (await published(nats_server.url, ReferralReceived.subject, 1),
                           await published(nats_server.url, ConsentUpdated.subject, 1))
    assert isinstance(updated, ConsentUpdated) and updated.consent.status is ConsentStatus.withdrawn
    assert updated.case_id == UUID(task["id"]) == received[0].case_id
    assert await count(intake.app, OutboxMessage) == 2

    await add_other_client(intake.app)
    assert (await intake.put(f"/fhir/Consent/{task['id']}", json=consent, headers=OTHER)).status_code == 404
    consent["status"] = "banana"
    invalid = await intake.put(f"/fhir/Consent/{task['id']}", json=consent, headers=EHR)
    assert invalid.status_code == 422 and invalid.json()["issue"][0]["expression"] == ["Consent.status"]


async def test_capability_statement_describes_what_intake_supports(intake):
    response = await intake.get("/fhir/metadata")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/fhir+json")
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"Bundle", "Task", "Consent"} <= set(resources)
    assert statement["rest"][0]["operation"][0]["name"] == "process-message"


@asynccontextmanager
async def database_altered(database_url: str, change: str, undo: str) -> AsyncIterator[None]:
    """Apply an ``ALTER DATABASE`` to intake's PostgreSQL database and drop its open connections (so
    the change reaches intake at once, as a restart or failover would); undo it on the way out."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs a database server that can fail: PostgreSQL (SQLite lives in intake's own "
                    "process, and these tests run as a user whom file permissions do not stop)")
    import asyncpg

    from tests.conftest import PG_HOST, PG_PORT, PG_USER

    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")

    async def alter(clause: str) -> None:
        await admin.execute(f'ALTER DATABASE "{name}" {clause}')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)

    try:
        await alter(change)
        yield
    finally:
        await alter(undo)
        await admin.close()


async def test_with_the_database_down_intake_answers_503_and_stores_nothing(intake, database_url):
    """PostgreSQL stops accepting the database's connections, as while it restarts or fails over."""
    body = load("by-and-for-deaf-bsl.json")
    async with database_altered(database_url, "ALLOW_CONNECTIONS false", "ALLOW_CONNECTIONS true"):
        down = await intake.post("/fhir/Bundle", json=body, headers=EHR)
        assert down.status_code == 503, down.text
        assert down.json()["issue"][0]["code"] == "transient" and down.headers["Retry-After"]
        assert (await intake.get("/readyz")).status_code == 503

    # Back up: the retry is a new referral (the failed attempt left nothing to replay), stored once.
    retried = await intake.post("/fhir/Bundle", json=body, headers=EHR)
    assert retried.status_code == 202 and "X-Idempotent-Replay" not in retried.headers
    assert await count(intake.app, Referral) == 1 and await count(intake.app, OutboxMessage) == 1


async def test_when_the_database_refuses_writes_intake_answers_503_and_stores_nothing(intake, database_url):
    """Reads still work (the client is recognised) but the referral's transaction cannot commit, as on
    a failover to a read-only replica: the whole transaction, outbox row included, is lost, never half."""
    body = load("ed-high-risk-message.json")
    read_only = ("SET default_transaction_read_only = on", "RESET default_transaction_read_only")
    async with database_altered(database_url, *read_only):
        refused = await intake.post("/fhir/$process-message", json=body, headers=EHR)
        assert refused.status_code == 503, refused.text
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert await count(intake.app, Referral) == 0 and await count(intake.app, OutboxMessage) == 0
    retried = await intake.post("/fhir/$process-message", json=body, headers=EHR)
    assert retried.status_code == 202 and "X-Idempotent-Replay" not in retried.headers
