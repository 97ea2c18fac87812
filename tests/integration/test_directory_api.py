"""The directory's search over the sample data, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.directory.app import create_app
from services.directory.settings import DirectorySettings
from services.launcher import NatsServer
from tests.harness import SERVICE_TOKEN, running


@pytest.fixture
async def directory(nats_server: NatsServer, database_url: str) -> AsyncIterator:
    settings = DirectorySettings(nats_url=nats_server.url, database_url=database_url, service_token=SERVICE_TOKEN,
                                 load_sample=True)
    async with running(create_app(settings)) as client:
        yield client


async def test_search_by_postcode_district_or_code_finds_local_and_national_services(directory):
    by_postcode = (await directory.get("/services", params={"area": "ls7 9zz"})).json()
    by_district = (await directory.get("/services", params={"area": "LS7"})).json()
    by_code = (await directory.get("/services", params={"area": "E08000035"})).json()
    assert by_postcode == by_district
    assert {s["id"] for s in by_district} == {s["id"] for s in by_code}
    reasons = {s["id"]: s["match_reason"] for s in by_district}
    assert reasons["aire-valley-da-outreach"] == "serves Leeds (E08000035)"
    assert reasons["national-da-helpline"] == "national service"


async def test_search_filters(directory):
    idvas = (await directory.get("/services", params={"area": "LS7", "type": ["idva", "health-idva"]})).json()
    assert {s["service_type"] for s in idvas} == {"idva", "health-idva"}
    by_and_for = (await directory.get("/services", params={"area": "LS7", "community": "black-minoritised"})).json()
    assert [s["id"] for s in by_and_for] == ["kinara-outreach"]


async def test_unknown_and_invalid_areas_get_specific_answers(directory):
    unknown = await directory.get("/services", params={"area": "ZZ9"})
    assert unknown.status_code == 404 and "not in the gazetteer" in unknown.json()["detail"]
    invalid = await directory.get("/services", params={"area": "not a place"})
    assert invalid.status_code == 400
    assert invalid.headers["content-type"] == "application/problem+json"


async def test_provider_authentication_is_for_services_only(directory):
    body = {"api_key": "pw_sample_aire_valley_da"}
    assert (await directory.post("/internal/providers/authenticate", json=body)).status_code == 401
    denied = await directory.post("/internal/providers/authenticate", json=body, headers={"X-API-Key": "nope"})
    assert denied.status_code == 403
    ok = await directory.post("/internal/providers/authenticate", json=body, headers={"X-API-Key": SERVICE_TOKEN})
    who = ok.json()
    assert (who["organisation_id"], who["name"], who["key_name"]) == (
        "aire-valley-da", "Aire Valley Domestic Abuse Service (sample)", "sample")


async def test_snapshot_gives_the_router_every_service_and_district(directory):
    assert (await directory.get("/internal/snapshot")).status_code == 401
    body = (await directory.get("/internal/snapshot", headers={"X-API-Key": SERVICE_TOKEN})).json()
    services = {s["id"]: s for s in body["services"]}
    assert services["kinara-outreach"]["by_and_for"] == ["black-minoritised"]
    assert services["national-da-helpline"]["coverage"] == ["national"]
    ls7 = next(a for a in body["areas"] if a["district"] == "LS7")
    assert ls7["lad_codes"] == ["E08000035"] and ls7["names"] == {"E08000035": "Leeds"}
