"""What the fuzzer found, each pinned: input limits as strict as storage, bounded integers, ids that
cannot inject a path, and OPTIONS answering with the methods a path has."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import httpx
import pytest
from sqlmodel import select

from services.directory.app import create_app as create_directory
from services.directory.settings import DirectorySettings
from services.intake.consumer import on_case_status
from services.launcher import NatsServer
from services.notify import api, offers
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from services.notify.store import Offer
from shared.auth import hash_api_key
from shared.events import CaseStatus, TaskStatus, utcnow
from shared.outbox import OutboxMessage
from tests.harness import SERVICE_CREDENTIALS, running, service_auth, url_for
from tests.integration.conftest import EHR
from tests.integration.notify_world import synthetic_offer
from tests.integration.test_intake_referrals import cancellation, load
from tests.servers import StubDirectory, serving

OPS_KEY = "pw_ops_test_key"
OPS = {"Authorization": f"Bearer {OPS_KEY}"}
PROVIDER_KEY = "pw_provider_test_key"
ORGANISATION = {"id": "fenside-da", "name": "Fenside Domestic Abuse Service (sample)", "website": "https://fenside.example"}


@pytest.fixture
async def directory(nats_server: NatsServer, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_directory(DirectorySettings(nats_url=nats_server.url, database_url=url_for(database_url, "directory"),
                                             **service_auth("directory"), load_sample=True,
                                             sample_ops_key_hash=hash_api_key(OPS_KEY)))
    async with running(app) as client:
        yield client


@pytest.mark.parametrize("change", [
    {"website": "https://fenside.example/" + "a" * 600},
    {"webhook_url": "https://fenside.example/" + "h" * 600, "delivery": "webhook",
     "signing_secrets": ["whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]},
    {"charity_number": "SC12345678-1234567890123"},
    {"by_and_for_other": ["a community named at length " * 3]},
])
async def test_an_organisation_that_could_not_be_read_back_is_refused_and_nothing_changes(directory, change):
    created = await directory.post("/organisations", json=ORGANISATION, headers=OPS)
    assert created.status_code == 201, created.text
    body = {k: v for k, v in ORGANISATION.items() if k != "id"} | change
    refused = await directory.put(f"/organisations/{ORGANISATION['id']}", json=body, headers=OPS)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json", refused.text
    # Everyone can still read the directory, and it holds what it held.
    one = await directory.get(f"/organisations/{ORGANISATION['id']}")
    assert one.status_code == 200 and one.json()["website"] == "https://fenside.example/"
    assert (await directory.get("/organisations")).status_code == 200


async def test_an_offset_too_large_for_the_database_is_an_operation_outcome(intake):
    response = await intake.get("/fhir/Task", params={"_offset": "99999999999999999999"}, headers=EHR)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/fhir+json"
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "_offset" in response.json()["issue"][0]["diagnostics"]


@pytest.fixture
async def notify(nats_server: NatsServer, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    stub = StubDirectory(SERVICE_CREDENTIALS, providers={PROVIDER_KEY: "org-synthetic"}, ops_users={OPS_KEY: "ops-alex"})
    async with serving(stub.app()) as directory_server:
        app = create_notify(NotifySettings(nats_url=nats_server.url, database_url=database_url,
                                           **service_auth("notify"), directory_url=directory_server.url))
        async with running(app) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def test_an_accept_that_races_the_deadline_is_a_409_and_the_offer_stays_expired(notify, monkeypatch,
                                                                                     database_url):
    """Read as 'offered', expired by the deadline timer before the provider's write: the expiry stands."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite writers take turns (one writer slot, BEGIN IMMEDIATE): the accept reads inside its "
                    "write transaction, so the timer cannot expire the offer in between")
    runtime = notify.app.state.runtime
    offer = synthetic_offer("org-synthetic")
    async with runtime.db.transaction() as session:
        session.add(offer)
    read = api.own_offer

    async def read_then_expire(session, provider, offer_id):
        seen = await read(session, provider, offer_id)
        async with runtime.db.transaction() as timer:
            await offers.expire_offer(timer, runtime.settings, await timer.get(Offer, offer_id), now=utcnow())
        return seen

    monkeypatch.setattr(api, "own_offer", read_then_expire)
    response = await notify.post(f"/offers/{offer.id}/accept", headers={"Authorization": f"Bearer {PROVIDER_KEY}"})
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    async with runtime.db.session() as session:
        assert (await session.get(Offer, offer.id)).status == "expired"
        subjects = (await session.exec(select(OutboxMessage.subject))).all()
    assert "case.offer.expired" in subjects and "case.offer.accepted" not in subjects


@pytest.mark.parametrize("service_id", ["svc\x01../../internal/snapshot", "svc/../organisations", "", "a" * 81])
async def test_assigning_a_malformed_service_id_is_a_clear_422(notify, service_id):
    response = await notify.post(f"/ops/escalations/{uuid4()}/assign", json={"service_id": service_id}, headers=OPS)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["body", "service_id"]


async def test_options_and_405_name_every_method_the_path_has(directory, intake):
    # One path, a public GET and the ops PUT and DELETE: all are named, whoever serves them.
    options = await directory.options("/organisations/fenside-da")
    assert options.status_code == 204 and options.headers["allow"] == "DELETE, GET, OPTIONS, PUT"
    refused = await directory.patch("/organisations/fenside-da", json={}, headers=OPS)
    assert refused.status_code == 405 and refused.headers["allow"] == "DELETE, GET, OPTIONS, PUT"
    assert refused.headers["content-type"] == "application/problem+json"
    subscription = await intake.post(f"/fhir/Subscription/{uuid4()}", headers=EHR)
    assert subscription.status_code == 405 and subscription.headers["allow"] == "DELETE, GET, OPTIONS"
    assert subscription.headers["content-type"] == "application/fhir+json"
    assert (await intake.options("/no/such/path")).status_code == 404


async def test_a_completed_referral_cannot_be_cancelled_and_its_task_never_goes_back(intake):
    task = (await intake.post("/fhir/Bundle", json=load("gp-referral.json"), headers=EHR)).json()
    db = intake.app.state.runtime.db
    for status in (TaskStatus.accepted, TaskStatus.completed, TaskStatus.in_progress):  # the last one is stale news
        async with db.transaction() as session:
            await on_case_status(session, CaseStatus(case_id=UUID(task["id"]), status=status, business_status=status),
                                 None)  # type: ignore[arg-type]
    assert (await intake.get(f"/fhir/Task/{task['id']}", headers=EHR)).json()["status"] == "completed"
    refused = await intake.post("/fhir/Bundle", json=cancellation(id=task["id"]), headers=EHR)
    assert refused.status_code == 409 and refused.headers["content-type"] == "application/fhir+json"
    [issue] = refused.json()["issue"]
    assert issue["code"] == "business-rule" and "completed, which is final" in issue["diagnostics"]
    assert (await intake.get(f"/fhir/Task/{task['id']}", headers=EHR)).json()["status"] == "completed"
