"""The directory as routing sees it: every service's rule answers worked out once per directory copy,
indexed by coverage code and risk band, so a case touches only the services that can cover it and does
no per-service work for those its risk band rules out; and the gazetteer copy that places a case."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from services.router.rules import (
    BANDS,
    BY_AND_FOR_DECLINED_REASON,
    NOT_FOR_SURVIVORS,
    ServiceProfile,
    area_tier,
    canonical_coverage,
)
from shared.directory_contract import DirectorySnapshot, ServiceRecord
from shared.events import AreaStatus, CaseArea, CaseSummary
from shared.geography import MATERIAL_SHARE, Gazetteer, canonical_code, describe, locate, split_area
from shared.reference import NATIONAL, ServiceStatus, ServiceType

MAX_LOCATED = 50_000


Entry = tuple[ServiceProfile, int]


@dataclass(slots=True)
class Bucket:
    """The services under one coverage code for one risk band: those the band rules out (rule 2, status),
    with the reason, and the rest with their area tier for that code (rule 1).

    By-and-for services are also kept apart, by community, with their rule-4 exclusions written out: most
    of a case's candidates are by-and-for services for communities the survivor did not share (or all of
    them, when she declined by-and-for services), and those are excluded without looking at each."""

    excluded: Mapping[str, str]
    live: tuple[Entry, ...]
    generic: tuple[Entry, ...]
    by_community: Mapping[str, tuple[Entry, ...]]
    by_and_for_declined: Mapping[str, str]
    by_and_for_not_shared: Mapping[str, str]


def _buckets(entries: list[Entry]) -> dict[str, Bucket]:
    out: dict[str, Bucket] = {}
    for band in BANDS:
        excluded: dict[str, str] = {}
        live: list[Entry] = []
        generic: list[Entry] = []
        by_community: dict[str, list[Entry]] = {}
        declined: dict[str, str] = {}
        not_shared: dict[str, str] = {}
        for entry in entries:
            profile = entry[0]
            why = profile.band_exclusions.get(band)
            if why is not None:
                excluded[profile.id] = why
                continue
            live.append(entry)
            if not profile.by_and_for:
                generic.append(entry)
                continue
            declined[profile.id] = BY_AND_FOR_DECLINED_REASON
            not_shared[profile.id] = profile.not_shared_reason
            for community in profile.by_and_for_sorted:
                by_community.setdefault(community, []).append(entry)
        out[band] = Bucket(excluded, tuple(live), tuple(generic),
                           {c: tuple(found) for c, found in by_community.items()}, declined, not_shared)
    return out


@dataclass(frozen=True)
class DirectoryIndex:
    """A snapshot indexed for matching: coverage code → services, so a case looks at tens, not thousands;
    and the gazetteer copy that places a case."""

    version: str
    services: Mapping[str, ServiceRecord]
    by_code: Mapping[str, tuple[ServiceRecord, ...]]
    national: tuple[ServiceRecord, ...]
    gazetteer: Gazetteer
    # Located areas by sector or district (each at most once): a case builds nothing to find its area.
    located: dict[str, RoutingArea] = field(default_factory=dict, compare=False)
    # Coverage code → risk band → services (rule answers precomputed); national services by risk band.
    buckets: Mapping[str, Mapping[str, Bucket]] = field(default_factory=dict, compare=False)
    national_buckets: Mapping[str, Bucket] = field(default_factory=dict, compare=False)
    # Every national helpline (rule 7 names the specialist ones as advice).
    helplines: tuple[ServiceProfile, ...] = field(default=(), compare=False)

    def capped(self, service_ids: Iterable[str]) -> list[str]:
        """Those of ``service_ids`` whose capacity is limited (``max_open_offers``): the only services whose
        open offers routing needs counted."""
        services = self.services
        return sorted({service_id for service_id in service_ids
                       if (s := services.get(service_id)) is not None and s.max_open_offers is not None})

    def locate(self, query: str | None) -> RoutingArea:
        """``shared.geography.locate``, remembered by sector or district (never by a full postcode)."""
        sector, district = split_area(query or "")
        key = sector or district
        if key is None:
            return RoutingArea.of(locate(self.gazetteer, query), self.gazetteer)
        area = self.located.get(key)
        if area is None:
            if len(self.located) >= MAX_LOCATED:
                self.located.clear()  # well-formed nonsense sent to /explain must not grow it without end
            area = self.located[key] = RoutingArea.of(locate(self.gazetteer, key), self.gazetteer)
        return area

    @classmethod
    def from_snapshot(cls, snapshot: DirectorySnapshot, gazetteer: Gazetteer | None = None) -> DirectoryIndex:
        by_code: dict[str, list[ServiceRecord]] = {}
        entries: dict[str, list[tuple[ServiceProfile, int]]] = {}
        national: list[ServiceRecord] = []
        national_entries: list[tuple[ServiceProfile, int]] = []
        helplines: list[ServiceProfile] = []
        for service in sorted(snapshot.services, key=lambda s: s.id):
            if service.service_type in NOT_FOR_SURVIVORS:
                continue
            profile = ServiceProfile.of(service)
            if service.service_type == ServiceType.national_helpline and service.status == ServiceStatus.active:
                helplines.append(profile)
            if NATIONAL in service.coverage:
                national.append(service)
                national_entries.append((profile, area_tier(None)))
            for raw in service.coverage:
                if raw != NATIONAL:
                    code = canonical_coverage(raw)
                    by_code.setdefault(code, []).append(service)
                    entries.setdefault(code, []).append((profile, area_tier(code)))
        return cls(
            version=snapshot.version,
            services={s.id: s for s in snapshot.services},
            by_code={code: tuple(services) for code, services in by_code.items()},
            national=tuple(national),
            gazetteer=gazetteer or EMPTY_GAZETTEER,
            buckets={code: _buckets(found) for code, found in entries.items()},
            national_buckets=_buckets(national_entries),
            helplines=tuple(helplines),
        )


EMPTY_GAZETTEER = Gazetteer(source="none", version="none")


@dataclass(frozen=True)
class RoutingArea:
    """Where a case is: the located area, the codes to match coverage against (material candidates first),
    the main authority's codes, each candidate's share, and the words to explain it."""

    area: CaseArea
    codes: tuple[str, ...]
    main: frozenset[str]
    names: Mapping[str, str]
    known: bool
    shares: Mapping[str, float]
    split: bool
    # Why only national services can be matched (outside England, non-geographic, unknown), or None.
    outside: str | None
    # The decision's notes about the area (the same for every case in it, so written once).
    notes: tuple[str, ...]
    # Each matched code's words in a reason ("serves Leeds (E08000035)"), by (code, tier, rank), built once.
    reasons: dict[tuple[str, int, int], str] = field(default_factory=dict, compare=False)

    @property
    def district(self) -> str | None:
        return self.area.district

    def area_reason(self, code: str | None, tier: int, rank: int) -> str:
        """Rule 1's reason for a service matched by ``code`` (None: by its national coverage alone)."""
        if code is None:
            return "national service"
        key = (code, tier, rank)
        reason = self.reasons.get(key)
        if reason is None:
            name = self.names.get(code)
            place = f"{name} ({code})" if name else code
            where = self.area.sector or self.district
            if self.split and code in self.shares:
                share = self.shares[code]
                place += (f", the main area of postcode sector {where} ({share:.0%})" if rank == 0
                          else f", {share:.0%} of postcode sector {where}; the main area's services rank first")
            reason = self.reasons[key] = (
                f"serves {place}" if tier == 0 else f"{('local', 'regional', 'national')[tier]} service covering {place}")
        return reason

    @classmethod
    def of(cls, area: CaseArea, gazetteer: Gazetteer, extra: tuple[str, ...] = ()) -> RoutingArea:
        codes = tuple(dict.fromkeys((*area.material, *extra)))
        names = {c: name for c in (*codes, *(s.code for s in area.lads)) if (name := gazetteer.name(c))}
        known = area.status is AreaStatus.england or bool(extra)
        outside = None if known else describe(gazetteer, area)
        if outside is not None:
            notes = [f"{outside}: only {'its country and ' if codes else ''}national services can be matched"]
        else:
            words = [f"{names[c]} ({c})" if c in names else c for c in codes]
            notes = [f"area: {', '.join(words)}" + (f"; postcode sector {area.sector}" if area.sector else "")]
            if len(area.lads) > 1:
                spans = ", ".join(f"{names.get(s.code, s.code)} ({s.share:.0%})" for s in area.lads)
                main = names.get(area.lads[0].code, area.lads[0].code)
                notes.append(
                    f"postcode sector {area.sector or area.district} spans {spans}: services covering any authority "
                    f"holding at least {MATERIAL_SHARE:.0%} are local; {main}'s (the main authority) rank first")
        return cls(
            area=area, codes=codes, main=frozenset(area.main) | frozenset(extra), names=names, known=known,
            shares={s.code: s.share for s in (*area.lads, *area.upper_tiers, *area.icbs)},
            split=len(area.lads) > 1 or len(area.icbs) > 1, outside=outside, notes=tuple(notes),
        )


def covering_services(area: RoutingArea, index: DirectoryIndex) -> dict[str, tuple[ServiceRecord, int]]:
    """Rule 1 alone: every service covering the case's area (a material code of it, or the nation), with its
    nearest area tier (``area_tier``): what routing starts from, before risk, eligibility or consent."""
    found: dict[str, tuple[ServiceRecord, int]] = {}
    for code in area.codes:
        tier = area_tier(code)
        for service in index.by_code.get(code, ()):
            previous = found.get(service.id)
            if previous is None or previous[1] > tier:
                found[service.id] = (service, tier)
    for service in index.national:
        found.setdefault(service.id, (service, area_tier(None)))
    return found


def resolve_case_area(summary: CaseSummary, index: DirectoryIndex) -> RoutingArea:
    """Locate the case's sector (or, for an older event, its district) in the gazetteer copy; any codes
    the caller supplied are matched too. A full postcode (typed into /explain) is reduced to its sector."""
    located = index.locate(summary.postcode_sector or summary.postcode_district)
    if not summary.area_codes:
        return located
    extra = tuple(canonical_code(c.upper()) for c in summary.area_codes)
    return RoutingArea.of(located.area, index.gazetteer, extra)
