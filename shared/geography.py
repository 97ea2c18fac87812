"""Where a postcode is: sector or district → local authorities, upper tiers, ICBs and region, with shares.

The directory owns the gazetteer (a shipped ONS-derived default for all of England, or an ONSPD/NSPL
import); the router holds a copy. Both answer with ``locate``, so a case resolves the same way in each.

Precision without identification: a full postcode is reduced to its sector ("LS7 3AB" → "LS7 3") before
anything is looked up or stored. Where a sector spans several authorities every candidate is kept with
its share; a candidate holding at least ``MATERIAL_SHARE`` of the sector's postcodes is *material*, and
services covering it are local to the case. Smaller shares are kept on the case but are mostly boundary
noise of the generalised boundaries the default was derived from (see the reference README).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from shared.events import AreaShare, AreaStatus, CaseArea
from shared.reference import normalise_postcode

# 5%: below it a candidate is mostly border misplacement or a stray non-geographic postcode; at or above
# it (1,716 of 10,062 sectors are split that way) the survivor may well live there.
MATERIAL_SHARE = 0.05

# April 2024 re-coded the Surrey/Sussex ICBs: coverage keyed on the July 2022 codes still means these.
ICB_ALIASES = {"E54000052": "E54000063", "E54000053": "E54000064"}
ENGLAND, WALES, SCOTLAND, NORTHERN_IRELAND = "E92000001", "W92000004", "S92000003", "N92000002"
COUNTRY_NAMES = {ENGLAND: "England", WALES: "Wales", SCOTLAND: "Scotland", NORTHERN_IRELAND: "Northern Ireland"}

# Postcode areas (the letters of the outward code) wholly outside England. DG and TD also have sectors in
# England: those are in the gazetteer and resolve before this table is asked.
SCOTTISH_AREAS = frozenset({"AB", "DD", "DG", "EH", "FK", "G", "HS", "IV", "KA", "KW", "KY", "ML", "PA", "PH",
                            "TD", "ZE"})
CROWN_DEPENDENCIES = {"GY": "Guernsey", "JE": "Jersey", "IM": "the Isle of Man"}
NON_GEOGRAPHIC_AREAS = {"BF": "a British Forces (BFPO) postcode", "BX": "a non-geographic (BX) postcode"}

_OUTWARD = r"[A-Z]{1,2}[0-9][A-Z0-9]?"
_FULL = re.compile(rf"^({_OUTWARD}) ?([0-9])[A-Z]{{2}}$")
_SECTOR = re.compile(rf"^({_OUTWARD}) ([0-9])$")
_DISTRICT = re.compile(rf"^({_OUTWARD})$")
_LETTERS = re.compile(r"[A-Z]*")

Shares = tuple[tuple[str, float], ...]


class Gazetteer(BaseModel):
    """Sector and district → (LAD shares, ICB shares); LAD → (upper tier, region, main ICB); names.

    An empty code in a share list is the part outside England (Wales has no ICBs) or outside England
    and Wales (no LAD in the data)."""

    model_config = ConfigDict(frozen=True)

    source: str
    version: str
    names: dict[str, str] = {}
    authorities: dict[str, tuple[str, str, str]] = {}
    sectors: dict[str, tuple[Shares, Shares]] = {}
    districts: dict[str, tuple[Shares, Shares]] = {}

    def name(self, code: str) -> str | None:
        return self.names.get(code) or COUNTRY_NAMES.get(code)

    def canonical(self, code: str) -> str:
        return canonical_code(code)


def canonical_code(code: str) -> str:
    """A July 2022 ICB code (E54000052/53) as its April 2024 successor; any other code unchanged."""
    return ICB_ALIASES.get(code, code)


def postcode_sector(value: str) -> str | None:
    """The sector of a full postcode or of a sector ("ls73ab" → "LS7 3"); ``None`` otherwise."""
    spaced = " ".join(value.upper().split())
    if full := _FULL.match(normalise_postcode(spaced)):
        return f"{full.group(1)} {full.group(2)}"
    if sector := _SECTOR.match(spaced):
        return f"{sector.group(1)} {sector.group(2)}"
    return None


def split_area(value: str) -> tuple[str | None, str | None]:
    """(sector, district) of a full postcode, a sector ("LS7 3") or a district ("LS7")."""
    sector = postcode_sector(value)
    if sector:
        return sector, sector.split(" ")[0]
    district = normalise_postcode(value)
    return None, district if _DISTRICT.match(district) else None


def _postcode_area(district: str) -> str:
    """The letters of an outward code ("LS7" → "LS")."""
    match = _LETTERS.match(district)
    return match.group() if match else ""


def _shares(pairs: Iterable[tuple[str, float]]) -> tuple[AreaShare, ...]:
    totals: dict[str, float] = {}
    for code, share in pairs:
        if code:
            totals[code] = totals.get(code, 0.0) + share
    return tuple(AreaShare(code=c, share=round(s, 4)) for c, s in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def area_from_shares(
    gazetteer: Gazetteer, *, sector: str | None, district: str | None, lads: Shares, icbs: Shares,
    precision: str,
) -> CaseArea:
    """A located area: every candidate with its share, the material codes and the main authority's codes."""
    lad_shares = _shares(lads)
    utla_shares = _shares((gazetteer.authorities.get(c, (c, "", ""))[0], s) for c, s in lads if c)
    icb_shares = _shares((gazetteer.canonical(c), s) for c, s in icbs)
    main_lad = next((c for c, _ in lads if c), "")
    # The country is the main part's: a sector mostly in Wales (CH4 0) is Welsh even with an English part.
    main_part = lads[0][0] if lads else ""
    country = {"E": ENGLAND, "W": WALES}.get(main_part[:1])
    if country is None:  # the main part lies outside England and Wales (the Scottish border)
        letters = _postcode_area(district or "")
        country = SCOTLAND if letters in SCOTTISH_AREAS else ENGLAND if main_lad.startswith("E") else None
    status = {ENGLAND: AreaStatus.england, WALES: AreaStatus.wales, SCOTLAND: AreaStatus.scotland}.get(
        country or "", AreaStatus.unknown)
    # Material: at least MATERIAL_SHARE of the postcodes, or the largest part of all (never dropped).
    largest_lad = main_part
    largest_icb = gazetteer.canonical(icbs[0][0]) if icbs else ""
    material: list[str] = []
    for share in lad_shares:
        if share.share >= MATERIAL_SHARE or share.code == largest_lad:
            utla, region, _ = gazetteer.authorities.get(share.code, (share.code, "", ""))
            material.extend((share.code, utla, region))
    material.extend(s.code for s in icb_shares if s.share >= MATERIAL_SHARE or s.code == largest_icb)
    if district:
        material.append(district)
    main: list[str] = []
    if largest_lad:
        utla, region, _ = gazetteer.authorities.get(largest_lad, (largest_lad, "", ""))
        main.extend((largest_lad, utla, region))
    if largest_icb:
        main.append(largest_icb)
    if district:
        main.append(district)
    if country:
        main.append(country)
    return CaseArea(
        status=status, sector=sector, district=district, precision=precision,  # type: ignore[arg-type]
        lads=lad_shares, upper_tiers=utla_shares, icbs=icb_shares,
        region=gazetteer.authorities.get(main_lad, ("", "", ""))[1] or None, country=country,
        material=tuple(dict.fromkeys(c for c in (*material, *([country] if country else [])) if c)),
        main=tuple(dict.fromkeys(c for c in main if c)),
        source=gazetteer.source,
    )


def locate(gazetteer: Gazetteer, value: str | None) -> CaseArea:
    """Where a postcode, sector or district is, by the gazetteer first and then by what its letters say.

    Outcomes: ``england`` (resolved), ``wales`` (a Welsh district or sector), ``scotland``, ``northern-ireland``
    (BT), ``crown-dependency`` (GY, JE, IM), ``non-geographic`` (BF, BX), ``unknown`` (well formed, in no
    table) and ``missing`` (no postcode). Only the sector and district are kept: never the full postcode.
    """
    if not value or not value.strip():
        return CaseArea(status=AreaStatus.missing)
    sector, district = split_area(value)
    if district is None:
        return CaseArea(status=AreaStatus.unknown)
    if sector and sector in gazetteer.sectors:
        lads, icbs = gazetteer.sectors[sector]
        return area_from_shares(gazetteer, sector=sector, district=district, lads=lads, icbs=icbs, precision="sector")
    if district in gazetteer.districts:
        lads, icbs = gazetteer.districts[district]
        return area_from_shares(gazetteer, sector=sector, district=district, lads=lads, icbs=icbs,
                                precision="district")
    letters = _postcode_area(district)
    if letters == "BT":
        status, country = AreaStatus.northern_ireland, NORTHERN_IRELAND
    elif letters in CROWN_DEPENDENCIES:
        status, country = AreaStatus.crown_dependency, None
    elif letters in NON_GEOGRAPHIC_AREAS:
        status, country = AreaStatus.non_geographic, None
    elif letters in SCOTTISH_AREAS:
        status, country = AreaStatus.scotland, SCOTLAND
    else:
        status, country = AreaStatus.unknown, None
    return CaseArea(status=status, sector=sector, district=district, country=country,
                    material=(country,) if country else (), main=(country,) if country else (),
                    source=gazetteer.source)


def describe(gazetteer: Gazetteer, area: CaseArea) -> str:
    """Why an area is outside what Pathways routes locally, in words for the referrer's Task and for ops."""
    where = area.sector or area.district or "no postcode"
    what = f"postcode {'sector' if area.sector else 'district'} {where}"
    if area.status is AreaStatus.missing:
        return "no postcode: no area can be derived"
    if area.status in (AreaStatus.wales, AreaStatus.scotland, AreaStatus.northern_ireland):
        return f"{what} is in {COUNTRY_NAMES[area.country or '']}: Pathways' local services are in England"
    if area.status is AreaStatus.crown_dependency:
        place = CROWN_DEPENDENCIES[_postcode_area(area.district or "")]
        return f"{what} is in {place}, a Crown dependency outside Pathways' area"
    if area.status is AreaStatus.non_geographic:
        return f"{NON_GEOGRAPHIC_AREAS[_postcode_area(area.district or '')]} ({where}) has no area to route by"
    if area.status is AreaStatus.unknown:
        return f"{what} is not in the gazetteer"
    return what
