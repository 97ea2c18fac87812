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
    assert ok.json() == {"organisation_id": "aire-valley-da", "name": "Aire Valley Domestic Abuse Service (sample)"}


async def test_snapshot_gives_the_router_every_service_and_the_gazetteer_in_force(directory):
    assert (await directory.get("/internal/snapshot")).status_code == 401
    body = (await directory.get("/internal/snapshot", headers={"X-API-Key": SERVICE_TOKEN})).json()
    services = {s["id"]: s for s in body["services"]}
    assert services["kinara-outreach"]["by_and_for"] == ["black-minoritised"]
    assert services["national-da-helpline"]["coverage"] == ["national"]
    assert (await directory.get("/internal/gazetteer")).status_code == 401
    copy = (await directory.get("/internal/gazetteer", headers={"X-API-Key": SERVICE_TOKEN})).json()
    assert copy["version"] == body["gazetteer_version"] and copy["source"] == "ons-derived-default"
    assert copy["sectors"]["LS7 3"] == [[["E08000035", 1.0]], [["E54000054", 1.0]]]
    assert len(copy["sectors"]) == 10_062 and len(copy["authorities"]) == 296


async def test_the_directory_says_which_gazetteer_is_in_force_with_its_attribution(directory):
    body = (await directory.get("/gazetteer")).json()
    assert body["source"] == "ons-derived-default" and body["imports"] == [] and body["imported_districts"] == 0
    assert body["attribution"][0].startswith("Source: Office for National Statistics")
    assert any("Royal Mail" in line for line in body["attribution"])
