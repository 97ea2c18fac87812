"""The shipped default gazetteer (ONS-derived, all of England) and ``locate``: no import, no database."""

from __future__ import annotations

import pytest

from services.directory.default_gazetteer import default_gazetteer
from shared.events import AreaStatus
from shared.geography import MATERIAL_SHARE, describe, locate, postcode_sector

LEEDS, BRADFORD, NORTH_YORKSHIRE = "E08000035", "E08000032", "E06000065"
TOWER_HAMLETS, CORNWALL = "E09000030", "E06000052"
WEST_YORKSHIRE_ICB, NE_LONDON_ICB, CORNWALL_ICB, HUMBER_NY_ICB = "E54000054", "E54000029", "E54000036", "E54000051"


@pytest.fixture(scope="module")
def gazetteer():
    return default_gazetteer()


@pytest.mark.parametrize(("postcode", "lad", "lad_name", "icb", "icb_name", "region"), [
    ("LS7 3AB", LEEDS, "Leeds", WEST_YORKSHIRE_ICB, "NHS West Yorkshire Integrated Care Board", "Yorkshire and The Humber"),
    ("E1 6AN", TOWER_HAMLETS, "Tower Hamlets", NE_LONDON_ICB, "NHS North East London Integrated Care Board", "London"),
    ("TR1 1AA", CORNWALL, "Cornwall", CORNWALL_ICB, "NHS Cornwall and the Isles of Scilly Integrated Care Board",
     "South West"),
])
def test_a_postcode_resolves_to_its_sector_authority_icb_and_region(gazetteer, postcode, lad, lad_name, icb, icb_name,
                                                                    region):
    area = locate(gazetteer, postcode)
    assert area.status is AreaStatus.england and area.precision == "sector"
    assert area.sector == postcode_sector(postcode) and postcode not in area.model_dump_json()
    assert area.lads[0].code == lad and gazetteer.name(lad) == lad_name
    assert area.upper_tiers[0].code == lad  # unitary / metropolitan / London borough: its own upper tier
    assert area.icbs[0].code == icb and gazetteer.name(icb) == icb_name
    assert gazetteer.name(area.region or "") == region
    # The main authority's codes: its services rank first.
    assert area.main == (lad, area.region, icb, postcode.split()[0], "E92000001")


def test_a_two_tier_district_has_its_county_as_upper_tier(gazetteer):
    area = locate(gazetteer, "CB1 2")  # Cambridge, in Cambridgeshire
    assert gazetteer.name(area.lads[0].code) == "Cambridge"
    assert gazetteer.name(area.upper_tiers[0].code) == "Cambridgeshire"


def test_a_sector_spanning_two_authorities_keeps_both_with_their_shares(gazetteer):
    area = locate(gazetteer, "BD3 7AA")
    assert [(s.code, s.share) for s in area.lads] == [(BRADFORD, 0.8698), (LEEDS, 0.1302)]
    assert {BRADFORD, LEEDS} <= set(area.material)  # both hold a material share
    assert area.main[0] == BRADFORD


def test_a_small_share_is_carried_but_not_material(gazetteer):
    area = locate(gazetteer, "E1 6AN")  # Tower Hamlets 86%, Hackney 11%, City of London 3%
    assert [s.code for s in area.lads] == [TOWER_HAMLETS, "E09000012", "E09000001"]
    assert area.lads[2].share < MATERIAL_SHARE and "E09000001" not in area.material
    assert "E09000012" in area.material


@pytest.mark.parametrize(("sector", "icb"), [("HG1 2", HUMBER_NY_ICB), ("BD23 1", WEST_YORKSHIRE_ICB)])
def test_the_icb_comes_from_the_sectors_own_sub_icb_shares_not_its_authority(gazetteer, sector, icb):
    area = locate(gazetteer, sector)
    assert area.lads[0].code == NORTH_YORKSHIRE  # both in North Yorkshire, whose main ICB is Humber and NY
    assert [s.code for s in area.icbs] == [icb] and icb in area.material


@pytest.mark.parametrize(("postcode", "status", "words"), [
    ("CF10 1AA", AreaStatus.wales, "is in Wales"),
    ("EH1 1AA", AreaStatus.scotland, "is in Scotland"),
    ("BT1 1AA", AreaStatus.northern_ireland, "is in Northern Ireland"),
    ("GY1 1AA", AreaStatus.crown_dependency, "Guernsey, a Crown dependency"),
    ("JE2 3AA", AreaStatus.crown_dependency, "Jersey, a Crown dependency"),
    ("IM1 1AA", AreaStatus.crown_dependency, "the Isle of Man, a Crown dependency"),
    ("BX1 1LT", AreaStatus.non_geographic, "non-geographic (BX) postcode (BX1 1) has no area"),
    ("BF1 3AA", AreaStatus.non_geographic, "British Forces (BFPO) postcode"),
    ("ZZ9 9ZZ", AreaStatus.unknown, "postcode sector ZZ9 9 is not in the gazetteer"),
    ("ZZ9", AreaStatus.unknown, "postcode district ZZ9 is not in the gazetteer"),
])
def test_postcodes_outside_england_or_unknown_get_a_specific_outcome(gazetteer, postcode, status, words):
    area = locate(gazetteer, postcode)
    assert area.status is status
    assert words in describe(gazetteer, area)
    if len(postcode) > 4:
        assert postcode not in describe(gazetteer, area)  # the sector at most, never the full postcode


def test_a_welsh_postcode_resolves_to_its_welsh_authority_and_wales(gazetteer):
    area = locate(gazetteer, "CF10 1AA")
    assert area.lads[0].code.startswith("W06") and gazetteer.name(area.lads[0].code) == "Cardiff"
    assert area.country == "W92000004" and not area.icbs


def test_a_cross_border_sector_keeps_its_english_part(gazetteer):
    berwick = locate(gazetteer, "TD15 1")  # mostly Northumberland, partly Scotland
    assert berwick.status is AreaStatus.england and berwick.lads[0].code == "E06000057"
    assert sum(s.share for s in berwick.lads) < 1  # the Scottish part has no LAD in the data


def test_every_english_authority_and_icb_is_named(gazetteer):
    assert len(gazetteer.authorities) == 296 and len(gazetteer.sectors) == 10_062
    icbs = {icb for _, _, icb in gazetteer.authorities.values()}
    assert len(icbs) == 42 and all(gazetteer.name(c) for c in icbs)
    assert all(gazetteer.name(c) and gazetteer.name(utla) for c, (utla, _, _) in gazetteer.authorities.items())
