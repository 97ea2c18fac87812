"""The gazetteer against a real database: import a small file in the ONS Postcode Directory's own
format, then resolve full postcodes, sectors and districts, including a district that spans two
local authorities; invalid and unknown queries get different, specific answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from services.cli import app as cli
from services.directory.app import create_app
from services.directory.gazetteer import import_onspd
from services.directory.settings import DirectorySettings
from services.launcher import NatsServer
from tests.harness import as_service, running, service_auth
from tests.unit.test_directory_model import ONSPD_HEADER, onspd_row

LEEDS, BRADFORD, WEST_YORKSHIRE = "E08000035", "E08000032", "E54000054"

# Synthetic postcodes (the "ZZ" area is not real geography) with real LAD and ICB codes: ZZ1 spans
# Leeds (3 live postcodes) and Bradford (1); ZZ2 is all Bradford; one ZZ1 postcode is terminated.
ONSPD_ROWS = [
    onspd_row("ZZ1 1AA", LEEDS, WEST_YORKSHIRE, "53.800000", "-1.500000"),
    onspd_row("ZZ1 1AB", LEEDS, WEST_YORKSHIRE, "53.820000", "-1.520000"),
    onspd_row("ZZ1 2AA", LEEDS, WEST_YORKSHIRE, "53.840000", "-1.540000"),
    onspd_row("ZZ1 2AB", BRADFORD, WEST_YORKSHIRE, "53.860000", "-1.560000"),
    onspd_row("ZZ1 2AD", BRADFORD, WEST_YORKSHIRE, "53.860000", "-1.560000", doterm="202101"),
    onspd_row("ZZ2 1AA", BRADFORD, WEST_YORKSHIRE, "53.790000", "-1.750000"),
]


def write_onspd(path: Path, rows: list[str] = ONSPD_ROWS) -> Path:
    path.write_text("\n".join([ONSPD_HEADER, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
async def application(nats_server: NatsServer, database_url: str) -> FastAPI:
    settings = DirectorySettings(nats_url=nats_server.url, database_url=database_url, **service_auth("directory"))
    return create_app(settings)


@pytest.fixture
async def directory(application: FastAPI, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running(application) as client:
        await import_onspd(application.state.runtime.db, write_onspd(tmp_path / "ONSPD_SAMPLE_UK.csv"))
        yield client


async def test_a_full_postcode_resolves_to_its_own_authority_and_position(directory):
    body = (await directory.get("/areas/zz12ab")).json()
    assert body["kind"] == "postcode" and body["district"] == "ZZ1"
    assert body["parts"] == [{"lad_code": BRADFORD, "lad_name": "Bradford", "utla_code": BRADFORD,
                              "icb_code": WEST_YORKSHIRE, "share": 1.0}]
    assert body["centroid"] == [53.86, -1.56]


async def test_a_district_spanning_two_authorities_keeps_both_with_their_shares(directory):
    body = (await directory.get("/areas/ZZ1")).json()
    assert body["kind"] == "district"
    assert [(p["lad_name"], p["share"]) for p in body["parts"]] == [("Leeds", 0.75), ("Bradford", 0.25)]
    assert body["centroid"] == [53.83, -1.53]


async def test_a_sector_resolves_from_its_own_postcodes(directory):
    whole_leeds = (await directory.get("/areas/ZZ1 1")).json()
    assert whole_leeds["kind"] == "sector" and [p["lad_code"] for p in whole_leeds["parts"]] == [LEEDS]
    mixed = (await directory.get("/areas/zz1 2")).json()
    # The terminated postcode does not count.
    assert [(p["lad_code"], p["share"]) for p in mixed["parts"]] == [(BRADFORD, 0.5), (LEEDS, 0.5)]


async def test_invalid_and_unknown_areas_get_different_specific_answers(directory):
    invalid = await directory.get("/areas/not a postcode")
    assert invalid.status_code == 400 and invalid.headers["content-type"] == "application/problem+json"
    assert "not a valid postcode" in invalid.json()["detail"]
    for query, detail in [("ZZ9", "Postcode district ZZ9 is not in the gazetteer"),
                          ("ZZ1 9ZZ", "Postcode ZZ1 9ZZ is not a live postcode"),
                          ("ZZ1 2AD", "Postcode ZZ1 2AD is not a live postcode"),  # terminated
                          ("ZZ1 7", "Postcode sector ZZ1 7 is not in the gazetteer")]:
        unknown = await directory.get(f"/areas/{query}")
        assert unknown.status_code == 404, query
        assert detail in unknown.json()["detail"]


async def test_a_local_authority_code_resolves_to_its_icb(directory):
    body = (await directory.get(f"/areas/{BRADFORD}")).json()
    assert body["kind"] == "code"
    assert body["parts"][0]["icb_code"] == WEST_YORKSHIRE and body["parts"][0]["lad_name"] == "Bradford"


async def test_reimporting_a_district_replaces_it(directory, application, tmp_path):
    await import_onspd(application.state.runtime.db, write_onspd(tmp_path / "update.csv", [
        onspd_row("ZZ1 1AA", BRADFORD, WEST_YORKSHIRE, "53.8", "-1.5"),
    ]))
    body = (await directory.get("/areas/ZZ1")).json()
    assert [(p["lad_code"], p["share"]) for p in body["parts"]] == [(BRADFORD, 1.0)]
    assert (await directory.get("/areas/ZZ1 1AB")).status_code == 404
    assert (await directory.get("/areas/ZZ2")).status_code == 200  # other districts untouched


def test_the_import_command_loads_a_file_into_the_directory_database(tmp_path):
    database = f"sqlite+aiosqlite:///{tmp_path / 'directory.db'}"
    result = CliRunner().invoke(cli, ["gazetteer", "import", str(write_onspd(tmp_path / "onspd.csv")),
                                      "--database-url", database])
    assert result.exit_code == 0, result.output
    assert "imported 5 postcodes in 2 districts (2 local authorities)" in result.output

    bad = tmp_path / "other.csv"
    bad.write_text("postcode,lat,long\nZZ1 1AA,53.8,-1.5\n")
    refused = CliRunner().invoke(cli, ["gazetteer", "import", str(bad), "--database-url", database])
    assert refused.exit_code == 2 and "not an ONSPD/NSPL file" in refused.output


async def test_an_import_is_in_force_for_its_districts_and_the_default_for_the_rest(directory):
    status = (await directory.get("/gazetteer")).json()
    assert status["source"] == "onspd-import" and status["imported_districts"] == 2
    assert [(i["file_name"], i["postcodes"]) for i in status["imports"]] == [("ONSPD_SAMPLE_UK.csv", 5)]
    assert (await directory.get("/areas/ZZ1 2")).json()["source"] == "onspd-import"
    leeds = (await directory.get("/areas/LS7 3AB")).json()
    assert leeds["source"] == "ons-derived-default" and leeds["parts"][0]["lad_name"] == "Leeds"
    copy = (await directory.get("/internal/gazetteer", headers=as_service("router"))).json()
    assert copy["version"] == status["version"] and copy["source"] == "onspd-import"
    assert copy["sectors"]["ZZ1 2"] == [[[BRADFORD, 0.5], [LEEDS, 0.5]], [[WEST_YORKSHIRE, 1.0]]]
    assert copy["sectors"]["LS7 3"] == [[[LEEDS, 1.0]], [[WEST_YORKSHIRE, 1.0]]]
