"""Routing with the shipped national gazetteer: the case's sector, every candidate authority with its
share, the main authority first, the ICB from the sector's own sub-ICB shares, old ICB codes, and clear
outcomes outside England. Pure: the default gazetteer and a synthetic directory, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.directory.default_gazetteer import default_gazetteer
from services.router.domain import DirectoryIndex, Lane, Outcome, resolve_case_area, route
from shared.events import (
    AreaStatus,
    CareSetting,
    CaseSummary,
    ConsentScope,
    ConsentState,
    ConsentStatus,
    RiskBand,
)
from tests.unit.router_directory import BRADFORD, LEEDS, SERVICES, WY_ICB, service, snapshot

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
HUMBER_NY_ICB, NORTH_YORKSHIRE = "E54000051", "E06000065"
EXTRA = (
    service("harrogate-outreach", "community-outreach", (HUMBER_NY_ICB,), coverage_level="regional"),
    service("craven-outreach", "community-outreach", (WY_ICB,), coverage_level="regional"),
    service("surrey-outreach-2022", "community-outreach", ("E54000052",), coverage_level="regional"),
    service("wales-helpline", "national-helpline", ("W92000004",), coverage_level="national"),
)
GRANTED = ConsentState(status=ConsentStatus.granted, scopes=tuple(ConsentScope))


@pytest.fixture(scope="module")
def index() -> DirectoryIndex:
    return DirectoryIndex.from_snapshot(snapshot((*SERVICES, *EXTRA)), default_gazetteer())


def case(sector: str | None, band: RiskBand = RiskBand.standard) -> CaseSummary:
    district = sector.split(" ")[0] if sector else None
    return CaseSummary(postcode_district=district, postcode_sector=sector, risk_band=band, setting=CareSetting.gp)


def test_a_sector_spanning_two_authorities_offers_the_main_authoritys_services_first_and_says_so(index):
    # BD3 7: Bradford 87%, Leeds 13%; both hold a material share, so services of both are local.
    high = route(case("BD3 7", RiskBand.high), GRANTED, index, open_offers={}, now=NOW)
    idvas = [s.service_id for s in high.lanes[Lane.idva]]
    assert idvas[0] == "bradford-idva" and "leeds-idva" in idvas
    [leeds] = [s for s in high.lanes[Lane.idva] if s.service_id == "leeds-idva"]
    assert "serves Leeds (E08000035), 13% of postcode sector BD3 7; the main area's services rank first" in leeds.reasons
    assert "the main area of postcode sector BD3 7 (87%)" in high.lanes[Lane.idva][0].reasons[0]
    assert any("spans Bradford (87%), Leeds (13%)" in n and "Bradford's (the main authority) rank first" in n
               for n in high.notes)
    assert [s.service_id for s in high.offer_to] == ["bradford-idva", "bradford-marac"]
    assert high.area is not None and [(s.code, s.share) for s in high.area.lads] == [(BRADFORD, 0.8698), (LEEDS, 0.1302)]


@pytest.mark.parametrize(("sector", "offered"), [("HG1 2", "harrogate-outreach"), ("BD23 1", "craven-outreach")])
def test_the_icb_comes_from_the_sector_not_from_its_local_authority(index, sector, offered):
    area = resolve_case_area(case(sector), index)
    assert area.area.lads[0].code == NORTH_YORKSHIRE
    decision = route(case(sector), GRANTED, index, open_offers={}, now=NOW)
    assert [s.service_id for s in decision.offer_to] == [offered]


def test_a_service_keyed_on_a_2022_icb_code_is_local_to_its_2024_successor(index):
    decision = route(case("GU1 1"), GRANTED, index, open_offers={}, now=NOW)  # Guildford, Surrey Heartlands
    assert [s.service_id for s in decision.offer_to] == ["surrey-outreach-2022"]
    assert "E54000063" in decision.offer_to[0].reasons[0]


@pytest.mark.parametrize(("sector", "helpline", "words"), [
    ("CF10 1", "wales-helpline", "postcode sector CF10 1 is in Wales: Pathways' local services are in England"),
    ("EH1 1", "national-da-helpline", "postcode sector EH1 1 is in Scotland"),
    ("BT1 1", "national-da-helpline", "postcode sector BT1 1 is in Northern Ireland"),
    ("GY1 1", "national-da-helpline", "postcode sector GY1 1 is in Guernsey, a Crown dependency outside Pathways' area"),
    ("BX1 1", "national-da-helpline", "a non-geographic (BX) postcode (BX1 1) has no area to route by"),
    ("ZZ9 9", "national-da-helpline", "postcode sector ZZ9 9 is not in the gazetteer"),
])
def test_outside_england_or_unknown_gets_a_national_service_ops_and_a_task_note(index, sector, helpline, words):
    decision = route(case(sector), GRANTED, index, open_offers={}, now=NOW)
    assert decision.outcome is Outcome.fallback
    assert [s.service_id for s in decision.offer_to] == [helpline]
    assert decision.escalation is not None and words in decision.escalation
    assert decision.referrer_note is not None and words[1:] in decision.referrer_note
    assert "ops have been told" in decision.referrer_note


def test_a_welsh_case_is_placed_in_wales(index):
    area = resolve_case_area(case("CF10 1"), index).area
    assert area.status is AreaStatus.wales and area.lads[0].code == "W06000015"


def test_an_older_event_with_only_a_district_still_routes(index):
    decision = route(CaseSummary(postcode_district="LS7", risk_band=RiskBand.standard, setting=CareSetting.gp),
                     GRANTED, index, open_offers={}, now=NOW)
    assert decision.offer_to[0].service_id == "leeds-outreach" and decision.area is not None
    assert decision.area.precision == "district"
