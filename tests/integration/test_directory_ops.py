"""Ops edit the directory over HTTP (real NATS, real databases): validation and clear errors, each
change announced as ``directory.changed`` on the bus, search reflecting it at once; HSDS and FHIR
views; the delivery settings notify reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.directory.app import create_app
from services.directory.sample import sample_directory
from services.directory.settings import DirectorySettings
from services.launcher import NatsServer
from shared.auth import hash_api_key
from shared.bus import EVENTS_STREAM
from tests.harness import as_service, eventually, running, service_auth

OPS_KEY = "pw_ops_test_key"
OPS = {"Authorization": f"Bearer {OPS_KEY}"}
INTERNAL = as_service("notify")
SECRET_OLD = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_NEW = "whsec_" + "NgLR0s9HLZrsUxkVQE9JMQAJp3MbMbTx"

NEW_ORG = {"id": "moorside-da", "name": "Moorside Domestic Abuse Service (sample)", "charity_number": "1234567",
           "contact_name": "Referrals lead (sample)", "contact_email": "referrals@moorside.example"}
NEW_SERVICE: dict[str, Any] = {
    "id": "moorside-outreach", "organisation_id": "moorside-da", "name": "Outreach (sample)",
    "service_type": "community-outreach", "coverage": ["LS7", "E08000032"], "risk_levels": ["standard", "medium"],
    "languages": ["pl"], "max_open_offers": 12, "response_sla_hours": {"medium": 48},
}


@pytest.fixture
async def application(nats_server: NatsServer, database_url: str) -> FastAPI:
    return create_app(DirectorySettings(
        nats_url=nats_server.url, database_url=database_url, **service_auth("directory"), load_sample=True,
        sample_ops_key_hash=hash_api_key(OPS_KEY),
    ))


@pytest.fixture
async def directory(application: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running(application) as client:
        yield client


async def last_change(application: FastAPI) -> dict[str, Any]:
    """The latest ``directory.changed`` on the bus, once the outbox has published everything."""
    from sqlmodel import col, select

    from shared.outbox import OutboxMessage

    runtime = application.state.runtime

    async def drained() -> bool:
        async with runtime.db.session() as session:
            pending = await session.exec(select(OutboxMessage).where(col(OutboxMessage.published_at).is_(None)))
            return pending.first() is None

    await eventually(drained)
    message = await runtime.bus.js.get_last_msg(EVENTS_STREAM, "directory.changed")
    return json.loads(message.data)  # type: ignore[no-any-return]


async def ids(client: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await client.get("/services", params=params)
    assert response.status_code == 200, response.text
    return [s["id"] for s in response.json()]


async def test_only_ops_may_edit(directory):
    assert (await directory.post("/organisations", json=NEW_ORG)).status_code == 401
    assert (await directory.post("/organisations", json=NEW_ORG, headers={"X-API-Key": "nope"})).status_code == 401
    assert (await directory.delete("/services/leeds-marac", headers=INTERNAL)).status_code == 401


async def test_ops_create_update_and_delete_and_every_change_is_announced(directory, application):
    created = await directory.post("/organisations", json=NEW_ORG, headers=OPS)
    assert created.status_code == 201
    assert (await last_change(application))["entity_id"] == "moorside-da"

    service = await directory.post("/services", json=NEW_SERVICE, headers=OPS)
    assert service.status_code == 201, service.text
    assert service.json()["organisation_name"] == NEW_ORG["name"]
    change = await last_change(application)
    assert (change["entity"], change["entity_id"], change["change"]) == ("service", "moorside-outreach", "created")
    assert "moorside-outreach" in await ids(directory, area="LS7 3AB")
    assert "moorside-outreach" in await ids(directory, area="E08000032", language="pl")

    paused = await directory.patch("/services/moorside-outreach/capacity", json={"accepting": False}, headers=OPS)
    assert paused.status_code == 200 and paused.json()["accepting"] is False
    assert (await last_change(application))["change"] == "updated"
    assert "moorside-outreach" not in await ids(directory, area="LS7", accepting=True)

    replaced = await directory.put("/services/moorside-outreach",
                                   json={k: v for k, v in NEW_SERVICE.items() if k != "id"} | {"coverage": ["E08000032"]},
                                   headers=OPS)
    assert replaced.status_code == 200 and replaced.json()["coverage"] == ["E08000032"]
    assert "moorside-outreach" not in await ids(directory, area="LS7")

    # An organisation with services cannot be deleted by accident.
    assert (await directory.delete("/organisations/moorside-da", headers=OPS)).status_code == 409
    assert (await directory.delete("/services/moorside-outreach", headers=OPS)).status_code == 204
    assert (await last_change(application))["change"] == "deleted"
    assert (await directory.delete("/organisations/moorside-da", headers=OPS)).status_code == 204
    assert (await directory.get("/organisations/moorside-da")).status_code == 404


async def test_invalid_edits_get_problem_details(directory):
    duplicate = await directory.post("/organisations", json={**NEW_ORG, "id": "leeds-marac"}, headers=OPS)
    assert duplicate.status_code == 409 and duplicate.headers["content-type"] == "application/problem+json"

    invalid = await directory.post("/services", json={**NEW_SERVICE, "coverage": ["Leeds"], "service_type": "spa"},
                                   headers=OPS)
    assert invalid.status_code == 422 and invalid.headers["content-type"] == "application/problem+json"
    problems = {tuple(e["loc"][1:]): e["msg"] for e in invalid.json()["errors"]}
    assert ("service_type",) in problems and ("coverage",) in problems

    orphan = await directory.post("/services", json={**NEW_SERVICE, "organisation_id": "nobody"}, headers=OPS)
    assert orphan.status_code == 422 and "No organisation" in orphan.json()["detail"]

    # A capacity change may not leave the service invalid (a perpetrator programme never accepts).
    reopen = await directory.patch("/services/west-riding-perpetrator/capacity", json={"accepting": True}, headers=OPS)
    assert reopen.status_code == 422 and "never a referral target" in reopen.json()["detail"]
    assert (await directory.patch("/services/nope/capacity", json={}, headers=OPS)).status_code == 404


async def test_search_filters_over_the_sample_directory(directory):
    leeds = await ids(directory, area="LS7")
    assert "bradford-marac" not in leeds and "aire-valley-da-refuge" in leeds  # West Yorkshire-wide via the ICB
    assert await ids(directory, area="LS7", type=["marac"]) == ["leeds-marac"]
    assert await ids(directory, area="LS7", community="deaf") == ["signhealth"]
    assert "kinara-outreach" in await ids(directory, area="LS7", language="ur", gender="female")
    assert "kinara-outreach" not in await ids(directory, area="LS7", gender="male")
    assert "aire-valley-da-refuge" not in await ids(directory, area="LS7", nrpf=True)
    assert "wharfe-chidva" in await ids(directory, area="LS7", age=15)
    assert "wharfe-chidva" not in await ids(directory, area="LS7", age=30)
    # Wakefield's local service is closed: only region-wide and national services accept there.
    wakefield = await ids(directory, area="E08000036", accepting=True)
    assert "wakefield-outreach" not in wakefield and "national-da-helpline" in wakefield
    bad_filter = await directory.get("/services", params={"area": "LS7", "type": "spa"})
    assert bad_filter.status_code == 422


async def test_notify_reads_delivery_settings_with_rotating_secrets(directory):
    path = "/internal/organisations/aire-valley-da/delivery"
    assert (await directory.get(path)).status_code == 401
    assert (await directory.get(path, headers=OPS)).status_code == 403
    assert (await directory.get(path, headers=INTERNAL)).json() == {
        "organisation_id": "aire-valley-da", "channel": "poll", "webhook_url": None, "signing_secrets": []}

    org = (await directory.get("/organisations/aire-valley-da")).json()
    body = {k: org[k] for k in ("name", "by_and_for", "contact_name")} | {
        "delivery": "webhook", "webhook_url": "https://aire-valley.example/pathways",
        "signing_secrets": [SECRET_NEW, SECRET_OLD]}
    updated = await directory.put("/organisations/aire-valley-da", json=body, headers=OPS)
    assert updated.status_code == 200 and updated.json()["signing_secret_count"] == 2
    assert SECRET_OLD not in updated.text and SECRET_OLD not in (await directory.get("/organisations")).text
    delivery = (await directory.get(path, headers=INTERNAL)).json()
    assert delivery["channel"] == "webhook" and delivery["signing_secrets"] == [SECRET_NEW, SECRET_OLD]
    assert (await directory.get("/internal/organisations/nobody/delivery", headers=INTERNAL)).status_code == 404


async def test_ops_issue_a_provider_key_that_notify_can_authenticate(directory):
    issued = await directory.post("/organisations/bradford-marac/keys", json={"name": "case-system"}, headers=OPS)
    assert issued.status_code == 201
    key = issued.json()["api_key"]
    who = await directory.post("/internal/providers/authenticate", json={"api_key": key}, headers=INTERNAL)
    assert who.json()["organisation_id"] == "bradford-marac"


async def test_hsds_export_and_import_round_trip_through_the_api(directory):
    exported = (await directory.get("/hsds")).json()
    assert exported["hsds_version"] == "3.0" and len(exported["organizations"]) == len(sample_directory()[0])
    kinara = next(o for o in exported["organizations"] if o["id"] == "kinara-womens-network")
    outreach = kinara["services"][0]
    assert {a["name"] for a in outreach["service_areas"]} == {"E08000035"}
    assert outreach["pathways"]["abuse_types"] == ["domestic-abuse", "fgm", "forced-marriage", "honour-based-abuse"]

    outreach["name"] = "Renamed outreach (sample)"
    assert (await directory.post("/hsds", json=exported)).status_code == 401
    imported = await directory.post("/hsds", json=exported, headers=OPS)
    organisations, services = sample_directory()
    assert imported.status_code == 200
    assert imported.json() == {"organisations": len(organisations), "services": len(services)}
    again = (await directory.get("/hsds")).json()
    assert again == exported  # nothing lost, the edit kept
    assert (await directory.get("/services/kinara-outreach")).json()["name"] == "Renamed outreach (sample)"

    broken = await directory.post("/hsds", json={"organizations": [{"id": "x", "name": ""}]}, headers=OPS)
    assert broken.status_code == 422 and broken.json()["errors"][0]["organization"] == "x"


async def test_fhir_view_of_services(directory):
    bundle = await directory.get("/fhir/HealthcareService", params={"area": "LS7"})
    assert bundle.headers["content-type"] == "application/fhir+json"
    ids_in_bundle = {e["resource"]["id"] for e in bundle.json()["entry"]}
    assert "leeds-marac" in ids_in_bundle and "bradford-marac" not in ids_in_bundle
    one = (await directory.get("/fhir/HealthcareService/leeds-marac")).json()
    assert one["resourceType"] == "HealthcareService" and one["active"] is True
    assert (await directory.get("/fhir/HealthcareService/nope")).status_code == 404


WEBHOOKS_INSIDE_THE_NETWORK = ("https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://169.254.169.254/latest",
                               "https://[::1]/hook", "https://[::ffff:10.0.0.1]/hook", "https://localhost/hook")


async def test_webhook_urls_inside_the_network_are_refused_when_ops_register_them(directory):
    """SSRF: a webhook URL that is, or resolves to, a private, loopback or link-local address (the cloud
    metadata service) is refused with the reason, and nothing is stored (notify checks again at delivery)."""
    webhook = {"delivery": "webhook", "signing_secrets": [SECRET_NEW]}
    for number, url in enumerate(WEBHOOKS_INSIDE_THE_NETWORK):
        created = await directory.post("/organisations", headers=OPS,
                                       json={**NEW_ORG, "id": f"ssrf-{number}", **webhook, "webhook_url": url})
        assert created.status_code == 422, url
        assert "webhook_url refused" in created.json()["detail"] and "Pathways does not call" in created.json()["detail"]
        assert (await directory.get(f"/organisations/ssrf-{number}")).status_code == 404
    org = (await directory.get("/organisations/aire-valley-da")).json()
    replaced = await directory.put("/organisations/aire-valley-da", headers=OPS, json={
        "name": org["name"], **webhook, "webhook_url": "https://169.254.169.254/latest"})
    assert replaced.status_code == 422
    assert (await directory.get("/organisations/aire-valley-da")).json()["delivery"] == "poll"

    exported = (await directory.get("/hsds")).json()
    aire = next(o for o in exported["organizations"] if o["id"] == "aire-valley-da")
    aire.setdefault("pathways", {})["webhook_url"] = "https://10.0.0.5/hook"
    imported = await directory.post("/hsds", json=exported, headers=OPS)
    assert imported.status_code == 422 and "aire-valley-da" in imported.json()["detail"]
