"""The directory's search over the sample data, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.directory.app import create_app
from services.directory.settings import DirectorySettings
from services.launcher import NatsServer
from tests.harness import as_service, running, service_auth


@pytest.fixture
async def directory(nats_server: NatsServer, database_url: str) -> AsyncIterator:
    settings = DirectorySettings(nats_url=nats_server.url, database_url=database_url, **service_auth("directory"),
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
    denied = await directory.post("/internal/providers/authenticate", json=body, headers={"Authorization": "Bearer nope"})
    assert denied.status_code == 403
    ok = await directory.post("/internal/providers/authenticate", json=body, headers=as_service("notify"))
    who = ok.json()
    assert (who["organisation_id"], who["name"], who["key_name"]) == (
        "aire-valley-da", "Aire Valley Domestic Abuse Service (sample)", "sample")


async def test_snapshot_gives_the_router_every_service_and_the_gazetteer_in_force(directory):
    assert (await directory.get("/internal/snapshot")).status_code == 401
    body = (await directory.get("/internal/snapshot", headers=as_service("router"))).json()
    services = {s["id"]: s for s in body["services"]}
    assert services["kinara-outreach"]["by_and_for"] == ["black-minoritised"]
    assert services["national-da-helpline"]["coverage"] == ["national"]
    assert (await directory.get("/internal/gazetteer")).status_code == 401
    copy = (await directory.get("/internal/gazetteer", headers=as_service("router"))).json()
    assert copy["version"] == body["gazetteer_version"] and copy["source"] == "ons-derived-default"
    assert copy["sectors"]["LS7 3"] == [[["E08000035", 1.0]], [["E54000054", 1.0]]]
    assert len(copy["sectors"]) == 10_062 and len(copy["authorities"]) == 296


async def test_the_directory_says_which_gazetteer_is_in_force_with_its_attribution(directory):
    body = (await directory.get("/gazetteer")).json()
    assert body["source"] == "ons-derived-default" and body["imports"] == [] and body["imported_districts"] == 0
    assert body["attribution"][0].startswith("Source: Office for National Statistics")
    assert any("Royal Mail" in line for line in body["attribution"])


async def test_any_english_postcode_resolves_on_the_shipped_default_with_names(directory):
    for postcode, lad, icb in [("LS7 3AB", "Leeds", "NHS West Yorkshire Integrated Care Board"),
                               ("E1 6AN", "Tower Hamlets", "NHS North East London Integrated Care Board"),
                               ("TR1 1AA", "Cornwall", "NHS Cornwall and the Isles of Scilly Integrated Care Board")]:
        body = (await directory.get(f"/areas/{postcode}")).json()
        assert body["status"] == "england" and body["precision"] == "sector" and body["source"] == "ons-derived-default"
        assert body["sector"] == postcode[:-2] and body["parts"][0]["lad_name"] == lad
        assert body["icbs"][0]["name"] == icb and body["region"]["name"]
    split = (await directory.get("/areas/BD3 7")).json()
    assert [(p["lad_name"], p["share"]) for p in split["parts"]] == [("Bradford", 0.8698), ("Leeds", 0.1302)]
    craven = (await directory.get("/areas/BD23 1")).json()
    assert craven["parts"][0]["lad_name"] == "North Yorkshire"
    assert craven["parts"][0]["icb_code"] == "E54000051"  # the authority's main ICB …
    assert [i["code"] for i in craven["icbs"]] == ["E54000054"]  # … but the sector's own is West Yorkshire


async def test_postcodes_outside_england_get_a_specific_answer(directory):
    wales = (await directory.get("/areas/CF10 1AA")).json()
    assert wales["status"] == "wales" and wales["parts"][0]["lad_name"] == "Cardiff"
    assert wales["country"]["name"] == "Wales" and "is in Wales" in wales["note"]
    scotland = (await directory.get("/areas/EH1 1AA")).json()
    assert scotland["status"] == "scotland" and scotland["parts"] == []
    helplines = (await directory.get("/services", params={"area": "EH1 1AA", "type": "national-helpline"})).json()
    assert helplines[0]["id"] == "scotland-da-helpline"
    unknown = await directory.get("/areas/ZZ9")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "Postcode district ZZ9 is not in the gazetteer."
