"""The gazetteer: postcode → local authority (LAD and upper tier) → ICB, from the ONS's own files.

Two sources, district by district: an ONSPD/NSPL import in the database where one was loaded for the
district, else the shipped ONS-derived default for all of England (``default_gazetteer``).
``gazetteer_in_force`` is the two layered, as the router's copy; ``gazetteer_status`` says which is in force.

``import_onspd`` reads the ONS Postcode Directory (ONSPD) or the National Statistics Postcode Lookup
(NSPL) CSV as published — columns ``pcds``, ``oslaua`` (ONSPD) or ``laua`` (NSPL), ``oscty``/``cty``,
``icb``, ``lat``, ``long``, and ``doterm`` for terminated postcodes — and derives the district table:
each postcode district with every local authority it falls in and that authority's share of the
district's live postcodes.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import delete, func, insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory.default_gazetteer import DEFAULT_SOURCE, default_gazetteer
from services.directory.domain import AreaKind, AreaPart, AreaQuery, InvalidArea, ResolvedArea, parse_area
from services.directory.store import AreaCentroid, DistrictArea, GazetteerImport, LocalAuthority, Postcode
from shared.db import Database
from shared.events import AreaStatus, CaseArea, DirectoryChanged
from shared.geography import Gazetteer, area_from_shares, canonical_code, describe, locate
from shared.outbox import enqueue
from shared.sqlite_driver import offloaded

IMPORTED_SOURCE = "onspd-import"
# ONSPD/NSPL pseudo-codes: "no county" (unitary authorities, London boroughs, metropolitan districts).
NO_COUNTY = {"", "E99999999", "W99999999", "S99999999", "N99999999", "L99999999", "M99999999"}
# ONSPD gives postcodes without a grid reference latitude 99.999999.
NO_POSITION = 99.0
BATCH = 5000


class GazetteerFormatError(ValueError):
    pass


class AreaNotFound(LookupError):
    pass


@dataclass(frozen=True)
class PostcodeRow:
    postcode: str
    district: str
    sector: str
    lad_code: str
    utla_code: str
    icb_code: str
    lat: float | None
    long: float | None


def read_onspd(stream: IO[str]) -> Iterator[PostcodeRow]:
    """Live postcodes from an ONSPD or NSPL CSV; raises ``GazetteerFormatError`` for another format."""
    reader = csv.DictReader(stream)
    header = {name.strip().lower() for name in reader.fieldnames or ()}
    lad_column = "oslaua" if "oslaua" in header else "laua" if "laua" in header else None
    county_column = "oscty" if "oscty" in header else "cty" if "cty" in header else None
    missing = [c for c in ("pcds", "icb", "lat", "long") if c not in header]
    if lad_column is None:
        missing.append("oslaua or laua")
    if missing:
        raise GazetteerFormatError(f"not an ONSPD/NSPL file: missing column(s) {', '.join(missing)}")
    for raw in reader:
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        if row.get("doterm"):
            continue  # terminated postcodes resolve to nothing today
        postcode = " ".join(row["pcds"].upper().split())
        lad = row[lad_column]
        if " " not in postcode or not lad or lad in NO_COUNTY:
            continue
        outward, inward = postcode.split(" ", 1)
        county = row.get(county_column or "", "")
        lat, long = _position(row["lat"], row["long"])
        yield PostcodeRow(
            postcode=postcode,
            district=outward,
            sector=f"{outward} {inward[:1]}",
            lad_code=lad,
            utla_code=lad if county in NO_COUNTY else county,
            icb_code=row["icb"] if row["icb"] not in NO_COUNTY else "",
            lat=lat,
            long=long,
        )


def _position(lat: str, long: str) -> tuple[float | None, float | None]:
    try:
        la, lo = float(lat), float(long)
    except ValueError:
        return None, None
    return (None, None) if la > NO_POSITION else (la, lo)


@dataclass
class DistrictTable:
    """What the import derives: per district, postcodes per (LAD, UTLA, ICB); centroids."""

    counts: dict[str, dict[tuple[str, str, str], int]] = field(default_factory=lambda: defaultdict(dict))
    sums: dict[str, list[float]] = field(default_factory=dict)

    def add(self, row: PostcodeRow) -> None:
        key = (row.lad_code, row.utla_code, row.icb_code)
        per_district = self.counts[row.district]
        per_district[key] = per_district.get(key, 0) + 1
        if row.lat is not None and row.long is not None:
            for area in (row.district, row.sector):
                total = self.sums.setdefault(area, [0.0, 0.0, 0])
                total[0] += row.lat
                total[1] += row.long
                total[2] += 1

    def district_rows(self, names: dict[str, str]) -> list[dict[str, object]]:
        """One row per (district, LAD): its share, upper tier, and the ICB most of its postcodes there are in
        (an LAD split between ICBs, such as North Yorkshire, can be in two within one district; the
        district's own ICB shares come from its postcodes, see ``gazetteer_in_force``)."""
        rows = []
        for district, parts in self.counts.items():
            total = sum(parts.values())
            by_lad: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)
            for (lad, utla, icb), n in parts.items():
                by_lad[lad][(utla, icb)] = n
            for lad, split in by_lad.items():
                utla, icb = max(split, key=lambda key: (split[key], key))
                rows.append(
                    {"district": district, "lad_code": lad, "lad_name": names.get(lad, lad), "utla_code": utla,
                     "icb_code": icb, "share": round(sum(split.values()) / total, 4)}
                )
        return rows

    def centroid_rows(self) -> list[dict[str, object]]:
        return [
            {"area": area, "lat": round(s[0] / s[2], 6), "long": round(s[1] / s[2], 6), "postcodes": int(s[2])}
            for area, s in self.sums.items()
        ]


def _batches(rows: Iterable[dict[str, object]]) -> Iterator[list[dict[str, object]]]:
    batch: list[dict[str, object]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class ImportSummary:
    postcodes: int
    districts: int
    local_authorities: int


async def import_onspd(db: Database, path: Path) -> ImportSummary:
    """Load an ONSPD/NSPL CSV: its districts replace what the gazetteer held for them, in one
    transaction that also announces ``directory.changed`` (entity ``gazetteer``)."""
    table = DistrictTable()
    # A national file is millions of rows: each batch goes to the driver's thread, so the directory keeps
    # answering between them (shared.sqlite_driver).
    with offloaded():
        return await _import(db, path, table)


async def _import(db: Database, path: Path, table: DistrictTable) -> ImportSummary:
    async with db.transaction() as session:
        default = default_gazetteer()
        names = {code: default.name(code) or code for code in default.authorities}
        names.update({la.lad_code: la.name for la in (await session.exec(select(LocalAuthority))).all()})
        with path.open(newline="", encoding="utf-8-sig") as stream:
            rows = read_onspd(stream)
            postcodes = 0
            seen_districts: set[str] = set()
            for batch in _batches(_collect(rows, table)):
                fresh = {str(r["district"]) for r in batch} - seen_districts
                if fresh:
                    await _forget_districts(session, fresh)
                    seen_districts |= fresh
                await (await session.connection()).execute(insert(Postcode), batch)
                postcodes += len(batch)
        for batch in _batches(table.district_rows(names)):
            await (await session.connection()).execute(insert(DistrictArea), batch)
        for batch in _batches(table.centroid_rows()):
            await (await session.connection()).execute(insert(AreaCentroid), batch)
        lads = await _learn_authorities(session, table, names)
        session.add(GazetteerImport(file_name=path.name[:200], postcodes=postcodes, districts=len(table.counts)))
        enqueue(session, DirectoryChanged(entity="gazetteer", entity_id=path.name[:80], change="imported"))
    return ImportSummary(postcodes=postcodes, districts=len(table.counts), local_authorities=lads)


def _collect(rows: Iterable[PostcodeRow], table: DistrictTable) -> Iterator[dict[str, object]]:
    for row in rows:
        table.add(row)
        yield row.__dict__


async def _forget_districts(session: AsyncSession, districts: set[str]) -> None:
    """A district in the file replaces what the gazetteer held for it (so regional files layer)."""
    await (await session.connection()).execute(delete(Postcode).where(col(Postcode.district).in_(districts)))
    await (await session.connection()).execute(delete(DistrictArea).where(col(DistrictArea.district).in_(districts)))
    await (await session.connection()).execute(delete(AreaCentroid).where(col(AreaCentroid.area).in_(districts)))
    for district in districts:
        # Sector keys are "<district> <digit>".
        await (await session.connection()).execute(delete(AreaCentroid).where(col(AreaCentroid.area).like(f"{district} _")))


async def _learn_authorities(session: AsyncSession, table: DistrictTable, names: dict[str, str]) -> int:
    """Record each imported LAD's upper tier and ICB (the file is the authority for both)."""
    learned: dict[str, tuple[str, str]] = {}
    for parts in table.counts.values():
        for lad, utla, icb in parts:
            learned[lad] = (utla, icb)
    for lad, (utla, icb) in learned.items():
        authority = await session.get(LocalAuthority, lad) or LocalAuthority(lad_code=lad, name=names.get(lad, lad))
        authority.utla_code = utla
        authority.icb_code = icb or authority.icb_code
        session.add(authority)
    return len(learned)


# --- Lookups ---------------------------------------------------------------------------------------


async def resolve(session: AsyncSession, area: str) -> ResolvedArea:
    """Resolve a postcode, sector, district or ONS code; ``InvalidArea`` for a malformed query,
    ``AreaNotFound`` for a well-formed one that neither source knows and no rule places.

    A postcode outside England resolves with its status (Wales, Scotland, Northern Ireland, a Crown
    dependency, non-geographic): that is an answer, not an error."""
    query = parse_area(area)
    default = default_gazetteer()
    if query.kind is AreaKind.code:
        return await _resolve_code(session, query, default)
    assert query.district is not None
    district_parts = await _district_parts(session, query.district)
    if district_parts:
        return await _resolve_imported(session, query, district_parts, default)
    located = locate(default, query.value)
    if located.status in (AreaStatus.unknown, AreaStatus.missing):
        why = describe(default, located)
        raise AreaNotFound(f"{why[:1].upper()}{why[1:]}.")
    return ResolvedArea(query.value, query.kind, located, _default_parts(default, located), _names(default, located))


def _names(gazetteer: Gazetteer, area: CaseArea) -> dict[str, str]:
    codes = [*area.material, *(s.code for s in (*area.lads, *area.upper_tiers, *area.icbs))]
    return {c: name for c in codes if (name := gazetteer.name(c))}


def _default_parts(gazetteer: Gazetteer, area: CaseArea) -> tuple[AreaPart, ...]:
    parts = []
    for share in area.lads:
        utla, _, icb = gazetteer.authorities.get(share.code, (share.code, "", ""))
        parts.append(AreaPart(share.code, gazetteer.name(share.code) or share.code, utla, icb, share.share))
    return tuple(parts)


async def _district_parts(session: AsyncSession, district: str) -> tuple[AreaPart, ...]:
    rows = (await session.exec(select(DistrictArea).where(DistrictArea.district == district))).all()
    return tuple(
        sorted((AreaPart(r.lad_code, r.lad_name, r.utla_code, r.icb_code, r.share) for r in rows),
               key=lambda p: (-p.share, p.lad_code))
    )


async def _centroid(session: AsyncSession, area: str) -> tuple[float, float] | None:
    row = await session.get(AreaCentroid, area)
    return (row.lat, row.long) if row else None


def _imported_area(default: Gazetteer, parts: tuple[AreaPart, ...], *, sector: str | None, district: str,
                   precision: str) -> tuple[CaseArea, dict[str, str]]:
    area = area_from_shares(default, sector=sector, district=district, precision=precision,
                            lads=tuple((p.lad_code, p.share) for p in parts),
                            icbs=tuple((p.icb_code, p.share) for p in parts))
    names = {**_names(default, area), **{p.lad_code: p.lad_name for p in parts}}
    return area.model_copy(update={"source": IMPORTED_SOURCE}), names


async def _resolve_imported(session: AsyncSession, query: AreaQuery, district_parts: tuple[AreaPart, ...],
                            default: Gazetteer) -> ResolvedArea:
    """The district was imported from an ONSPD/NSPL file: exact per-postcode data."""
    assert query.district is not None
    has_units = (await session.exec(select(Postcode.postcode).where(Postcode.district == query.district).limit(1))).first()
    parts, sector, precision, centroid_key = district_parts, None, "district", query.district
    if has_units and query.kind is AreaKind.postcode:
        unit = await session.get(Postcode, query.value)
        if unit is None:
            raise AreaNotFound(f"Postcode {query.value} is not a live postcode in the gazetteer.")
        names = {p.lad_code: p.lad_name for p in district_parts}
        parts = (AreaPart(unit.lad_code, names.get(unit.lad_code, unit.lad_code), unit.utla_code, unit.icb_code, 1.0),)
        sector, precision = unit.sector, "sector"
        area, area_names = _imported_area(default, parts, sector=sector, district=query.district, precision="sector")
        centroid = (unit.lat, unit.long) if unit.lat is not None and unit.long is not None else None
        return ResolvedArea(query.value, AreaKind.postcode, area, parts, area_names, centroid)
    if has_units and query.kind is AreaKind.sector:
        parts = await _sector_parts(session, query.value, district_parts)
        sector, precision, centroid_key = query.value, "sector", query.value
    area, area_names = _imported_area(default, parts, sector=sector, district=query.district, precision=precision)
    # Only the district table is known for a sector or postcode query without units: answer at district level.
    kind = query.kind if precision == "sector" or query.kind is AreaKind.district else AreaKind.district
    return ResolvedArea(query.value if kind is query.kind else query.district, kind, area, parts, area_names,
                        await _centroid(session, centroid_key))


async def _sector_parts(session: AsyncSession, sector: str, district_parts: tuple[AreaPart, ...]) -> tuple[AreaPart, ...]:
    rows = (
        await session.exec(
            select(Postcode.lad_code, Postcode.utla_code, Postcode.icb_code, func.count())
            .where(Postcode.sector == sector)
            .group_by(col(Postcode.lad_code), col(Postcode.utla_code), col(Postcode.icb_code))
        )
    ).all()
    if not rows:
        raise AreaNotFound(f"Postcode sector {sector} is not in the gazetteer.")
    total = sum(n for *_, n in rows)
    names = {p.lad_code: p.lad_name for p in district_parts}
    return tuple(
        sorted((AreaPart(lad, names.get(lad, lad), utla, icb, round(n / total, 4)) for lad, utla, icb, n in rows),
               key=lambda p: (-p.share, p.lad_code))
    )


async def _resolve_code(session: AsyncSession, query: AreaQuery, default: Gazetteer) -> ResolvedArea:
    code = canonical_code(query.value)
    authority = await session.get(LocalAuthority, code)
    if authority is not None:
        part = AreaPart(authority.lad_code, authority.name, authority.utla_code or authority.lad_code,
                        authority.icb_code or "", 1.0)
    elif code in default.authorities:
        utla, _, icb = default.authorities[code]
        part = AreaPart(code, default.name(code) or code, utla, icb, 1.0)
    else:
        # ICB, region or country codes need no lookup: services covering them match by the code itself.
        area = CaseArea(status=AreaStatus.england if code.startswith("E") else AreaStatus.unknown,
                        material=(code,), main=(code,), source=DEFAULT_SOURCE)
        return ResolvedArea(query.value, AreaKind.code, area, (), _names(default, area))
    area = area_from_shares(default, sector=None, district=None, precision="none",
                            lads=((part.lad_code, 1.0),), icbs=((part.icb_code, 1.0),) if part.icb_code else ())
    names = {**_names(default, area), part.lad_code: part.lad_name}
    return ResolvedArea(query.value, AreaKind.code, area, (part,), names)


# --- The gazetteer in force (the router's copy) -----------------------------------------------------


@dataclass(frozen=True)
class GazetteerStatus:
    source: str
    version: str
    imports: tuple[GazetteerImport, ...]
    imported_districts: int


async def gazetteer_status(session: AsyncSession) -> GazetteerStatus:
    imports = tuple((await session.exec(select(GazetteerImport).order_by(col(GazetteerImport.id)))).all())
    default = default_gazetteer()
    if not imports:
        return GazetteerStatus(DEFAULT_SOURCE, default.version, (), 0)
    districts = (await session.exec(select(func.count(func.distinct(DistrictArea.district))))).one()
    latest = imports[-1]
    return GazetteerStatus(IMPORTED_SOURCE, f"{default.version}+import:{latest.id}:{latest.imported_at.isoformat()}",
                           imports, int(districts))


async def gazetteer_in_force(session: AsyncSession, version: str) -> Gazetteer:
    """The shipped default with every imported district (and its sectors) laid over it."""
    default = default_gazetteer()
    if version == default.version:
        return default
    district_rows: dict[str, list[DistrictArea]] = {}
    for row in (await session.exec(select(DistrictArea))).all():
        district_rows.setdefault(row.district, []).append(row)
    imported_districts = {
        d: (_pairs((r.lad_code, r.share) for r in rows), _pairs((r.icb_code, r.share) for r in rows))
        for d, rows in district_rows.items()
    }
    counts: dict[str, dict[tuple[str, str], int]] = {}
    for sector, lad, icb, n in (await session.exec(
        select(Postcode.sector, Postcode.lad_code, Postcode.icb_code, func.count())
        .group_by(col(Postcode.sector), col(Postcode.lad_code), col(Postcode.icb_code))
    )).all():
        counts.setdefault(sector, {})[(lad, icb)] = n
    imported_sectors = {}
    district_icbs: dict[str, dict[str, int]] = {}
    for sector, parts in counts.items():
        total = sum(parts.values())
        imported_sectors[sector] = (_pairs((lad, n / total) for (lad, _), n in parts.items()),
                                    _pairs((icb, n / total) for (_, icb), n in parts.items()))
        per_district = district_icbs.setdefault(sector.split(" ")[0], {})
        for (_, icb), n in parts.items():
            per_district[icb] = per_district.get(icb, 0) + n
    for district, icbs in district_icbs.items():
        # The district's ICB shares from its own postcodes (its rows hold each LAD's main ICB only).
        if district in imported_districts:
            total = sum(icbs.values())
            imported_districts[district] = (imported_districts[district][0],
                                            _pairs((icb, n / total) for icb, n in icbs.items()))
    # An imported district replaces the default's sectors of that district too.
    sectors = {s: v for s, v in default.sectors.items() if s.split(" ")[0] not in imported_districts}
    return default.model_copy(update={
        "source": IMPORTED_SOURCE, "version": version,
        "sectors": {**sectors, **imported_sectors}, "districts": {**default.districts, **imported_districts},
    })


def _pairs(items: Iterable[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    totals: dict[str, float] = {}
    for code, share in items:
        totals[code] = totals.get(code, 0.0) + share
    return tuple((c, round(v, 4)) for c, v in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


__all__ = ["AreaNotFound", "GazetteerFormatError", "InvalidArea", "import_onspd", "read_onspd", "resolve"]
