"""The gazetteer: postcode → local authority (LAD and upper tier) → ICB, from the ONS's own files.

``import_onspd`` reads the ONS Postcode Directory (ONSPD) or the National Statistics Postcode Lookup
(NSPL) CSV as published — columns ``pcds``, ``oslaua`` (ONSPD) or ``laua`` (NSPL), ``oscty``/``cty``,
``icb``, ``lat``, ``long``, and ``doterm`` for terminated postcodes — and derives the district table:
each postcode district with every local authority it falls in and that authority's share of the
district's live postcodes.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import delete, func, insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory.domain import AreaKind, AreaPart, AreaQuery, InvalidArea, ResolvedArea, parse_area
from services.directory.store import AreaCentroid, DistrictArea, LocalAuthority, Postcode
from shared.db import Database
from shared.events import DirectoryChanged
from shared.outbox import enqueue

REFERENCE_DIR = Path(__file__).parent / "reference"
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
        rows = []
        for district, parts in self.counts.items():
            total = sum(parts.values())
            for (lad, utla, icb), n in parts.items():
                rows.append(
                    {"district": district, "lad_code": lad, "lad_name": names.get(lad, lad), "utla_code": utla,
                     "icb_code": icb, "share": round(n / total, 4)}
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
    async with db.transaction() as session:
        names = {la.lad_code: la.name for la in (await session.exec(select(LocalAuthority))).all()}
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


# --- Reference tables shipped with the service -----------------------------------------------------


def reference_authorities() -> list[LocalAuthority]:
    """Local authority names and codes (ONS), with ICBs where the shipped LAD → ICB table has them."""
    with (REFERENCE_DIR / "lad_names.csv").open(encoding="utf-8") as stream:
        names = list(csv.DictReader(stream))
    icbs = json.loads((REFERENCE_DIR / "lad_icb.json").read_text())["lad_to_icb"]
    return [
        LocalAuthority(lad_code=row["LAD23CD"], name=row["LAD23NM"], icb_code=icbs.get(row["LAD23CD"]))
        for row in names
        if row["LAD23CD"][0] in "EW"
    ]


def reference_icbs() -> dict[str, dict[str, str]]:
    """The 42 ICBs in England: ONS code → ODS code and name."""
    return json.loads((REFERENCE_DIR / "icbs.json").read_text())["icbs"]  # type: ignore[no-any-return]


async def load_reference_if_empty(db: Database) -> bool:
    async with db.transaction() as session:
        if (await session.exec(select(LocalAuthority).limit(1))).first() is not None:
            return False
        session.add_all(reference_authorities())
    return True


# --- Lookups ---------------------------------------------------------------------------------------


async def resolve(session: AsyncSession, area: str) -> ResolvedArea:
    """Resolve a postcode, sector, district or ONS code; ``InvalidArea`` for a malformed query,
    ``AreaNotFound`` for a well-formed one the gazetteer does not know."""
    query = parse_area(area)
    if query.kind is AreaKind.code:
        return await _resolve_code(session, query)
    assert query.district is not None
    district_parts = await _district_parts(session, query.district)
    if not district_parts:
        raise AreaNotFound(f"Postcode district {query.district} is not in the gazetteer.")
    if query.kind is AreaKind.district:
        return ResolvedArea(query.district, query.district, district_parts, AreaKind.district,
                            await _centroid(session, query.district))
    has_units = (await session.exec(select(Postcode.postcode).where(Postcode.district == query.district).limit(1))).first()
    if not has_units:
        # Only the district table is known here (e.g. the shipped sample): answer at district level.
        return ResolvedArea(query.district, query.district, district_parts, AreaKind.district,
                            await _centroid(session, query.district))
    if query.kind is AreaKind.postcode:
        unit = await session.get(Postcode, query.value)
        if unit is None:
            raise AreaNotFound(f"Postcode {query.value} is not a live postcode in the gazetteer.")
        names = {p.lad_code: p.lad_name for p in district_parts}
        part = AreaPart(unit.lad_code, names.get(unit.lad_code, unit.lad_code), unit.utla_code, unit.icb_code, 1.0)
        centroid = (unit.lat, unit.long) if unit.lat is not None and unit.long is not None else None
        return ResolvedArea(query.district, query.district, (part,), AreaKind.postcode, centroid)
    return await _resolve_sector(session, query, district_parts)


async def _district_parts(session: AsyncSession, district: str) -> tuple[AreaPart, ...]:
    rows = (await session.exec(select(DistrictArea).where(DistrictArea.district == district))).all()
    return tuple(
        sorted((AreaPart(r.lad_code, r.lad_name, r.utla_code, r.icb_code, r.share) for r in rows),
               key=lambda p: (-p.share, p.lad_code))
    )


async def _centroid(session: AsyncSession, area: str) -> tuple[float, float] | None:
    row = await session.get(AreaCentroid, area)
    return (row.lat, row.long) if row else None


async def _resolve_sector(session: AsyncSession, query: AreaQuery, district_parts: tuple[AreaPart, ...]) -> ResolvedArea:
    rows = (
        await session.exec(
            select(Postcode.lad_code, Postcode.utla_code, Postcode.icb_code, func.count())
            .where(Postcode.sector == query.value)
            .group_by(col(Postcode.lad_code), col(Postcode.utla_code), col(Postcode.icb_code))
        )
    ).all()
    if not rows:
        raise AreaNotFound(f"Postcode sector {query.value} is not in the gazetteer.")
    total = sum(n for *_, n in rows)
    names = {p.lad_code: p.lad_name for p in district_parts}
    parts = tuple(
        sorted((AreaPart(lad, names.get(lad, lad), utla, icb, round(n / total, 4)) for lad, utla, icb, n in rows),
               key=lambda p: (-p.share, p.lad_code))
    )
    assert query.district is not None
    return ResolvedArea(query.district, query.district, parts, AreaKind.sector, await _centroid(session, query.value))


async def _resolve_code(session: AsyncSession, query: AreaQuery) -> ResolvedArea:
    authority = await session.get(LocalAuthority, query.value)
    if authority is None:
        # ICB, region or country codes need no lookup: services covering them match by the code itself.
        return ResolvedArea(query.value, None, (), AreaKind.code)
    part = AreaPart(authority.lad_code, authority.name, authority.utla_code or authority.lad_code,
                    authority.icb_code or "", 1.0)
    return ResolvedArea(query.value, None, (part,), AreaKind.code)


__all__ = ["AreaNotFound", "GazetteerFormatError", "InvalidArea", "import_onspd", "read_onspd", "resolve"]
