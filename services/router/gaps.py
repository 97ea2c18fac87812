"""Gap analysis for commissioners, from the router's own view of the world (its cases and its copy of the
directory and gazetteer), with the same coverage rule routing uses (rule 1: ``index.covering_services``,
the area tier from the coverage that matched).

Raw counts only: notify, which publishes the reports, applies small-number suppression to the tables it
builds from them. Nothing here identifies a case: the answer is counts by area and community.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel

from services.router.index import DirectoryIndex, RoutingArea, covering_services, resolve_case_area
from services.router.rules import IDVA_TYPES, TIER_WORDS, survivor_communities
from shared.directory_contract import ServiceRecord
from shared.events import ByAndForPreference, CaseSummary
from shared.reference import ServiceStatus, ServiceType


class Availability(StrEnum):
    local = "local"
    regional = "regional"
    national = "national"
    none = "none"


class GapCount(BaseModel):
    icb: str
    community: str
    availability: Availability
    survivors: int


class AreaCoverage(BaseModel):
    """A local authority and whether the directory lists an IDVA service and a MARAC covering it."""

    lad: str
    icb: str | None
    idva: bool
    marac: bool


class GeographyReport(BaseModel):
    names: dict[str, str]
    gaps: list[GapCount]
    areas: list[AreaCoverage]


def wanted_communities(summary: CaseSummary) -> list[str]:
    """The communities whose by-and-for services the survivor's routing looks for: each one they shared
    (or that follows from what they shared), unless they declined by-and-for services."""
    if summary.preferences.by_and_for == ByAndForPreference.declined:
        return []
    return sorted(survivor_communities(summary))


def availability(summary: CaseSummary, community: str, index: DirectoryIndex,
                 covering: dict[str, tuple[ServiceRecord, int]] | None = None) -> Availability:
    """The nearest tier at which a by-and-for service of ``community`` covers the case's area
    (``covering``: rule 1's services for the case, when the caller has them already)."""
    if covering is None:
        covering = covering_services(resolve_case_area(summary, index), index)
    tiers = [tier for service, tier in covering.values()
             if community in service.by_and_for and service.status == ServiceStatus.active]
    return Availability(TIER_WORDS[min(tiers)]) if tiers else Availability.none


def main_icb(area: RoutingArea) -> str:
    """The ICB holding most of the case's postcode sector ("unknown" outside England or unplaced)."""
    icbs = area.area.icbs
    return icbs[0].code if icbs else "unknown"


def gap_counts(summaries: Iterable[CaseSummary], index: DirectoryIndex) -> list[GapCount]:
    counts: Counter[tuple[str, str, Availability]] = Counter()
    for summary in summaries:
        communities = wanted_communities(summary)
        if not communities:
            continue
        # Each case is placed, and its covering services found, once for all its communities.
        area = resolve_case_area(summary, index)
        covering, icb = covering_services(area, index), main_icb(area)
        for community in communities:
            counts[(icb, community, availability(summary, community, index, covering))] += 1
    return [GapCount(icb=icb, community=c, availability=a, survivors=n) for (icb, c, a), n in sorted(counts.items())]


def area_coverage(index: DirectoryIndex) -> list[AreaCoverage]:
    """Every local authority in the gazetteer, with whether an active IDVA service and a MARAC cover it
    (its own code, its upper tier, its ICB or its region)."""
    rows = []
    for lad, (utla, region, icb) in sorted(index.gazetteer.authorities.items()):
        codes = [c for c in (lad, utla, icb and index.gazetteer.canonical(icb), region) if c]
        services = [s for code in codes for s in index.by_code.get(code, ()) if s.status == ServiceStatus.active]
        rows.append(AreaCoverage(
            lad=lad, icb=icb or None,
            idva=any(s.service_type in IDVA_TYPES for s in services),
            marac=any(s.service_type == ServiceType.marac for s in services),
        ))
    return rows


def geography_report(summaries: list[CaseSummary], index: DirectoryIndex) -> GeographyReport:
    gaps = gap_counts(summaries, index)
    areas = area_coverage(index)
    codes = {g.icb for g in gaps} | {a.lad for a in areas} | {a.icb for a in areas if a.icb}
    names = {code: name for code in codes if (name := index.gazetteer.name(code))}
    return GeographyReport(names=names, gaps=gaps, areas=areas)
