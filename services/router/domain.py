"""Routing rules: pure functions from a case, the directory and current capacity to a ranked, explained
decision. No I/O here: the consumer and the API feed these functions and store what they return.

The rules (issue 5), in the order they are applied to every candidate service:

1. **Area**: the case's postcode sector is located in the gazetteer copy (``shared.geography.locate``).
   Services covering any candidate authority (LAD or upper tier), ICB (from the sector's own sub-ICB
   shares), region or postcode district that holds a material share (``MATERIAL_SHARE``, 5%) are local;
   the main (largest-share) authority's services rank before the other candidates', and the reasons say
   so. Then regional and national services of the same kind, in that order. A postcode outside England
   (Wales, Scotland, Northern Ireland, a Crown dependency), a non-geographic or an unknown one gets the
   services covering its country (if any) and the national ones, and is escalated to ops with the reason.
2. **Risk**: high risk goes, in parallel, to an IDVA service (a health IDVA first in an emergency
   department or maternity setting) and to the area's MARAC; medium and standard risk go to community
   specialist services. A service that does not take the case's risk band is excluded.
3. **Eligibility** is hard: gender and age served, no recourse to public funds, BSL and language,
   abuse type, children and young people.
4. **Choices**: services or kinds the survivor declined are never offered; a preferred worker gender
   or language ranks a service up. Matching by-and-for services rank above generic ones unless the
   survivor declined by-and-for services; where none is local, the best regional or national one is
   offered beside the best local service.
5. **Consent** (``shared.consent.consent_covers``, the rule notify also applies): only services within
   the consent receive an offer; without consent a high-risk case goes only to the MARAC on a recorded
   safeguarding basis, and a lower-risk case gets no offer, with a helpline as advice.
6. **Capacity**: paused services and those at their maximum open offers are passed over, and recorded.
7. **Never dropped**: when nothing fits, the matching national helpline is offered and the case is
   escalated to ops with the reason.
8. **Deterministic**: every ordering ends with the service id, so the same case and directory always
   give the same ranking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache

from shared.consent import consent_covers
from shared.directory_contract import DirectorySnapshot, ServiceRecord
from shared.events import (
    AreaStatus,
    ByAndForPreference,
    CareSetting,
    CaseArea,
    CaseSummary,
    ConsentState,
    ConsentStatus,
    RiskBand,
    RoutedService,
)
from shared.geography import MATERIAL_SHARE, Gazetteer, canonical_code, describe, locate, split_area
from shared.reference import (
    NATIONAL,
    AgeBand,
    Community,
    CoverageLevel,
    Need,
    ServiceStatus,
    ServiceType,
)

RULE_VERSION = "2026.11-3"  # 3: sector areas, material shares, main authority first, edge outcomes

# Hospital settings, where a health IDVA (based in the hospital) is offered before a community IDVA.
ACUTE_SETTINGS = frozenset({CareSetting.emergency_department, CareSetting.maternity})
IDVA_TYPES = frozenset({ServiceType.idva, ServiceType.health_idva, ServiceType.chidva})
COMMUNITY_TYPES = frozenset(
    {ServiceType.community_outreach, ServiceType.refuge, ServiceType.isva, ServiceType.sv_counselling,
     ServiceType.chidva}
)
HIGH_RISK_TYPES = IDVA_TYPES | {ServiceType.marac}
# Never a route for a survivor: not considered at all.
NOT_FOR_SURVIVORS = frozenset({ServiceType.perpetrator_programme})
YOUNG_BANDS = frozenset({AgeBand.under_16, AgeBand.age_16_17})
AGE_RANGES = {
    AgeBand.under_16: (0, 15),
    AgeBand.age_16_17: (16, 17),
    AgeBand.age_18_24: (18, 24),
    AgeBand.age_25_59: (25, 59),
    AgeBand.age_60_plus: (60, 200),
}
# Abuse types that need a specialist: a service that lists them ranks up for a case that has them.
SPECIALIST_ABUSE_TYPES = frozenset({"forced-marriage", "honour-based-abuse", "fgm", "sexual-violence"})
COMMUNITY_WORDS = {
    Community.black_minoritised: "Black and minoritised",
    Community.deaf: "Deaf",
    Community.disabled: "disabled",
    Community.lgbt: "LGBT+",
    Community.gypsy_roma_traveller: "Gypsy, Roma and Traveller",
    Community.older_people: "older",
    Community.men: "male",
}
LANGUAGE_WORDS = {"en": "English", "ur": "Urdu", "pa": "Punjabi", "pl": "Polish", "ar": "Arabic", "bn": "Bengali",
                  "so": "Somali", "ro": "Romanian", "gu": "Gujarati", "ps": "Pashto", "fa": "Farsi"}


class Lane(StrEnum):
    """A line of services offered in parallel with the others; a re-offer moves along one lane."""

    idva = "idva"
    marac = "marac"
    specialist = "specialist"
    by_and_for = "by-and-for"
    helpline = "helpline"


ROLE_WORDS = {
    Lane.idva: "high risk: IDVA service",
    Lane.marac: "high risk: area MARAC",
    Lane.specialist: "community specialist service",
    Lane.helpline: "national helpline",
}


class Outcome(StrEnum):
    routed = "routed"
    fallback = "fallback"  # the national helpline, and ops told
    no_offer = "no-offer"


TIER_WORDS = ("local", "regional", "national")


# ---- the directory as routing sees it -------------------------------------------------------------


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
        national: list[ServiceRecord] = []
        for service in sorted(snapshot.services, key=lambda s: s.id):
            if service.service_type in NOT_FOR_SURVIVORS:
                continue
            if NATIONAL in service.coverage:
                national.append(service)
            for code in service.coverage:
                if code != NATIONAL:
                    # A July 2022 ICB code covers its April 2024 successor.
                    by_code.setdefault(canonical_code(code.upper()), []).append(service)
        return cls(
            version=snapshot.version,
            services={s.id: s for s in snapshot.services},
            by_code={code: tuple(services) for code, services in by_code.items()},
            national=tuple(national),
            gazetteer=gazetteer or EMPTY_GAZETTEER,
        )


EMPTY_GAZETTEER = Gazetteer(source="none", version="none")
MAX_LOCATED = 50_000


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

    @property
    def district(self) -> str | None:
        return self.area.district

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


def resolve_case_area(summary: CaseSummary, index: DirectoryIndex) -> RoutingArea:
    """Locate the case's sector (or, for an older event, its district) in the gazetteer copy; any codes
    the caller supplied are matched too. A full postcode (typed into /explain) is reduced to its sector."""
    located = index.locate(summary.postcode_sector or summary.postcode_district)
    if not summary.area_codes:
        return located
    extra = tuple(canonical_code(c.upper()) for c in summary.area_codes)
    return RoutingArea.of(located.area, index.gazetteer, extra)


# ---- the decision -----------------------------------------------------------------------------------


@dataclass
class Decision:
    """A routing decision: the full ranking per lane, who is offered now, and every reason."""

    outcome: Outcome
    offer_to: list[RoutedService] = field(default_factory=list)
    lanes: dict[Lane, list[RoutedService]] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    passed_over: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    escalation: str | None = None
    no_offer_reason: str | None = None
    advice: str | None = None
    # What the referrer's Task says beside an offer (why only national services were matched).
    referrer_note: str | None = None
    area: CaseArea | None = None
    rule_version: str = RULE_VERSION
    directory_version: str = ""

    def ranking(self) -> list[str]:
        """Every ranked service id, lane by lane (for tests and audits)."""
        return [s.service_id for services in self.lanes.values() for s in services]


@dataclass(frozen=True)
class _Candidate:
    record: ServiceRecord
    tier: int
    area_reason: str
    # 0: covers the main authority (or the whole case's area); 1: covers another material candidate only.
    area_rank: int = 0


def _community_words(communities: Iterable[str]) -> str:
    return _words(tuple(sorted(communities)))


@lru_cache(maxsize=1024)
def _words(communities: tuple[str, ...]) -> str:
    # Cached: exclusion reasons name communities for many services on every case.
    return ", ".join(COMMUNITY_WORDS.get(c, c) for c in communities)  # type: ignore[call-overload]


def survivor_communities(summary: CaseSummary) -> dict[str, str]:
    """Communities the survivor shared (or that follow from what they shared), each with why.

    A BSL need matches Deaf-led services, a disability access need disabled-led ones, an older age band
    services for older survivors, a male survivor services for men.
    """
    shared = {c: "a shared characteristic" for c in summary.characteristics}
    if Need.bsl in summary.needs:
        shared.setdefault(Community.deaf, "BSL need")
    if Need.disability_access in summary.needs:
        shared.setdefault(Community.disabled, "disability access need")
    if summary.age_band == AgeBand.age_60_plus:
        shared.setdefault(Community.older_people, "age band 60-plus")
    if summary.gender == "male":
        shared.setdefault(Community.men, "gender")
    return shared


def is_young_person(summary: CaseSummary) -> bool:
    return summary.age_band in YOUNG_BANDS or Need.young_person in summary.needs


def _tier(service: ServiceRecord) -> int:
    if NATIONAL in service.coverage or service.coverage_level == CoverageLevel.national:
        return 2
    return 1 if service.coverage_level == CoverageLevel.regional else 0


def _candidates(area: RoutingArea, index: DirectoryIndex) -> list[_Candidate]:
    """Services covering the case's area (with the code that matched), then national ones.

    Where the sector spans several authorities, a service covering only a smaller (material) candidate is
    local too, ranked after the main authority's, and its reason gives the candidate's share."""
    found: dict[str, _Candidate] = {}
    shares, split = area.shares, area.split
    where = area.area.sector or area.district
    for code in area.codes:
        for service in index.by_code.get(code, ()):
            previous = found.get(service.id)
            rank = 0 if code in area.main else 1
            if previous is not None and previous.area_rank <= rank:
                continue
            name = area.names.get(code)
            tier = _tier(service)
            place = f"{name} ({code})" if name else code
            if split and code in shares:
                place += (f", the main area of postcode sector {where} ({shares[code]:.0%})" if rank == 0
                          else f", {shares[code]:.0%} of postcode sector {where}; the main area's services rank first")
            reason = f"serves {place}" if tier == 0 else f"{TIER_WORDS[tier]} service covering {place}"
            found[service.id] = _Candidate(service, tier, reason, rank)
    for service in index.national:
        # Behind a national service that matched the case's own country code (a helpline for Wales, say).
        found.setdefault(service.id, _Candidate(service, 2, "national service", area_rank=1))
    return list(found.values())


def _ineligible(service: ServiceRecord, summary: CaseSummary, shared: Mapping[str, str]) -> str | None:
    """Why the survivor cannot use this service (hard eligibility and their choices), or ``None``.

    A by-and-for service is for survivors of its community: it is not offered to a survivor who has not
    shared that characteristic (the provider would have to decline, and the survivor would wait).
    """
    prefs = summary.preferences
    declined = set(prefs.declined_service_types)
    if service.service_type in declined or service.id in declined or service.organisation_id in declined:
        return "the survivor declined this service or kind of service"
    if service.by_and_for and prefs.by_and_for is ByAndForPreference.declined:
        return "the survivor declined by-and-for services"
    if service.by_and_for and not set(service.by_and_for) & set(shared):
        return f"by and for {_community_words(service.by_and_for)} survivors, which the survivor has not shared"
    if service.genders and summary.gender and summary.gender not in ("unknown", *service.genders):
        return f"serves {' and '.join(service.genders)} survivors only"
    if summary.age_band in AGE_RANGES and (service.min_age is not None or service.max_age is not None):
        low, high = AGE_RANGES[AgeBand(summary.age_band)]
        if (service.min_age is not None and high < service.min_age) or (
            service.max_age is not None and low > service.max_age
        ):
            return f"does not serve age band {summary.age_band}"
    if service.service_type == ServiceType.chidva and not is_young_person(summary):
        return "for children and young people"
    if Need.no_recourse_to_public_funds in summary.needs and not service.accepts_nrpf:
        return "does not accept survivors with no recourse to public funds"
    if Need.bsl in summary.needs and not service.bsl and service.service_type != ServiceType.marac:
        return "no BSL provision, which the survivor needs"
    if summary.language and service.languages and summary.language not in service.languages:
        return f"does not work in {LANGUAGE_WORDS.get(summary.language, summary.language)}"
    # A case with no abuse type recorded is a domestic abuse case.
    case_types = set(summary.abuse_types) or {"domestic-abuse"}
    if service.abuse_types and not set(service.abuse_types) & case_types:
        return f"works only with {', '.join(service.abuse_types)}"
    if service.service_type == ServiceType.refuge and Need.safe_accommodation not in summary.needs:
        return "refuge: no safe accommodation need recorded"
    return None


def _fit(service: ServiceRecord, summary: CaseSummary, shared: Mapping[str, str], wants_by_and_for: bool
         ) -> tuple[int, int, int, list[str]]:
    """How well an eligible service fits: (by-and-for class, specialism, preference) and the reasons.

    By-and-for class 0 is a service by and for a community the survivor shared, 1 a generic service.
    """
    reasons: list[str] = []
    matched = sorted(set(service.by_and_for) & set(shared)) if wants_by_and_for else []
    if matched:
        why = sorted({shared[c] for c in matched})
        reasons.append(f"by-and-for {_community_words(matched)} survivors, matches {' and '.join(why)}")
        bf_class = 0
    else:
        bf_class = 1
    specialism = 0
    for abuse in sorted(SPECIALIST_ABUSE_TYPES & set(service.abuse_types) & set(summary.abuse_types)):
        specialism += 1
        reasons.append(f"specialist in {abuse.replace('-', ' ')}")
    if service.service_type == ServiceType.refuge:
        specialism += 1
        reasons.append("safe accommodation, as needed")
    if service.service_type == ServiceType.chidva:
        specialism += 1
        reasons.append("for children and young people")
    if Need.bsl in summary.needs and service.bsl:
        reasons.append("BSL provision")
    preference = 0
    prefs = summary.preferences
    if prefs.worker_gender and prefs.worker_gender in service.worker_genders:
        preference += 1
        reasons.append(f"offers a {prefs.worker_gender} worker, as preferred")
    if prefs.language and prefs.language in service.languages:
        preference += 1
        reasons.append(f"works in {LANGUAGE_WORDS.get(prefs.language, prefs.language)}, as preferred")
    return bf_class, specialism, preference, reasons


def route(
    summary: CaseSummary,
    consent: ConsentState,
    index: DirectoryIndex,
    *,
    open_offers: Mapping[str, int],
    now: datetime,
    sla_hours: Mapping[str, float] | None = None,
) -> Decision:
    """Decide which services to offer the case to, in what order, and why; deterministic for the same inputs.

    ``open_offers`` counts each service's offers awaiting an answer (capacity); ``sla_hours`` is the
    area protocol's response window per risk band, carried on each offer.
    """
    high = summary.risk_band is RiskBand.high
    acute = summary.setting in ACUTE_SETTINGS
    area = resolve_case_area(summary, index)
    decision = Decision(outcome=Outcome.routed, directory_version=index.version, area=area.area)
    shared = survivor_communities(summary)
    wants_by_and_for = summary.preferences.by_and_for is not ByAndForPreference.declined
    expired = consent.expires_at is not None and consent.expires_at <= now
    granted = consent.status is ConsentStatus.granted and not expired
    consent_words = "expired" if consent.status is ConsentStatus.granted and expired else str(consent.status)

    outside = area.outside
    decision.notes.extend(area.notes)
    if high:
        decision.notes.append(
            "high risk: an IDVA service and the area's MARAC, in parallel"
            + ("; a health IDVA first in this hospital setting" if acute else "")
        )
    else:
        decision.notes.append(f"{summary.risk_band} risk: community specialist services")
    if shared and wants_by_and_for:
        decision.notes.append(f"survivor shared: {_community_words(shared)}; matching by-and-for services rank first")
    elif shared:
        decision.notes.append("the survivor declined by-and-for services")
    if not granted:
        decision.notes.append(
            f"consent {consent_words}: only the MARAC, on the recorded safeguarding basis"
            if high and consent.safeguarding_basis else f"consent {consent_words}"
        )

    # High risk: IDVA services, and community services only as a by-and-for offer beside them.
    route_types = (IDVA_TYPES | COMMUNITY_TYPES) if high else COMMUNITY_TYPES
    pools: dict[Lane, list[tuple[tuple[int, int, int, int, int, int, str], RoutedService]]] = {
        lane: [] for lane in Lane}
    respond_within = (sla_hours or {}).get(summary.risk_band)

    for candidate in sorted(_candidates(area, index), key=lambda c: c.record.id):
        service = candidate.record
        kind = service.service_type
        if kind == ServiceType.national_helpline:
            lane = Lane.helpline
        elif kind == ServiceType.marac:
            lane = Lane.marac
        elif kind in route_types:
            lane = Lane.idva if kind in IDVA_TYPES and high else Lane.specialist
        else:
            lane = None
        if lane is None or (lane is Lane.marac and not high):
            decision.excluded[service.id] = (
                "excluded: IDVA and MARAC are for high-risk cases" if kind in HIGH_RISK_TYPES
                else f"excluded: not a {summary.risk_band}-risk route"
            )
            continue
        if service.status != ServiceStatus.active:
            decision.excluded[service.id] = f"excluded: {service.status.replace('-', ' ')}"
            continue
        if service.risk_levels and summary.risk_band not in service.risk_levels:
            decision.excluded[service.id] = f"excluded: does not take {summary.risk_band} risk"
            continue
        why_not = _ineligible(service, summary, shared)
        if why_not is not None:
            decision.excluded[service.id] = f"excluded: {why_not}"
            continue
        bf_class, specialism, preference, fit_reasons = _fit(service, summary, shared, wants_by_and_for)
        if high and lane is Lane.specialist and bf_class != 0:
            # A high-risk case goes to an IDVA; a community service only as the by-and-for offer beside it.
            decision.excluded[service.id] = "excluded: high risk goes to an IDVA service"
            continue
        permitted, consent_reason = consent_covers(
            consent, service_type=kind, by_and_for=bool(service.by_and_for),
            organisation_id=service.organisation_id, now=now,
        )
        if not permitted:
            decision.excluded[service.id] = f"excluded: {consent_reason}"
            continue
        if not service.accepting:
            decision.passed_over[service.id] = "passed over: not accepting referrals (paused)"
            continue
        if service.max_open_offers is not None and open_offers.get(service.id, 0) >= service.max_open_offers:
            decision.passed_over[service.id] = (
                f"passed over: at capacity ({open_offers.get(service.id, 0)} of {service.max_open_offers} open offers)"
            )
            continue
        role = ROLE_WORDS[lane]
        if acute and kind == ServiceType.health_idva and lane is Lane.idva:
            role = "health IDVA, first in a hospital setting"
        setting_rank = 0
        if lane is Lane.idva:
            setting_rank = (0 if kind == ServiceType.health_idva else 1) if acute else (
                1 if kind == ServiceType.health_idva else 0)
        # A young person's children's IDVA is the IDVA route for them.
        if lane is Lane.idva and kind == ServiceType.chidva:
            setting_rank = -1
        key = (candidate.tier, candidate.area_rank, setting_rank, bf_class, -specialism, -preference, service.id)
        routed = RoutedService(
            service_id=service.id,
            organisation_id=service.organisation_id,
            service_type=kind,
            name=service.name,
            reasons=(candidate.area_reason, role, *fit_reasons, consent_reason),
            by_and_for=tuple(sorted(service.by_and_for)),
            respond_within_hours=_sla(service, summary.risk_band, respond_within),
        )
        if bf_class == 0 and lane in (Lane.idva, Lane.specialist):
            pools[Lane.by_and_for].append((key, routed))
        pools[lane].append((key, routed))

    ranked = {lane: [r for _, r in sorted(pool, key=lambda item: item[0])] for lane, pool in pools.items()}
    primary = Lane.idva if high else Lane.specialist
    # A matching by-and-for service at the top of the main lane needs no separate offer; otherwise the
    # best matching by-and-for service (regional or national when none is local) goes beside it.
    bf_ids = {r.service_id for r in ranked[Lane.by_and_for]}
    top_is_matching = bool(ranked[primary]) and ranked[primary][0].service_id in bf_ids
    if top_is_matching or not (shared and wants_by_and_for):
        ranked[Lane.by_and_for] = []
    else:
        ranked[primary] = [r for r in ranked[primary] if r.service_id not in bf_ids]
        if ranked[Lane.by_and_for]:
            top = ranked[Lane.by_and_for][0]
            local = min(key[0] for key, _ in pools[Lane.by_and_for]) == 0
            beside = ("offered beside the IDVA service" if local
                      else "no matching by-and-for service is local: offered beside the best local service")
            ranked[Lane.by_and_for][0] = top.model_copy(update={"reasons": (*top.reasons, beside)})
    # Only the lanes with services, in a fixed order.
    order: tuple[Lane, ...] = (Lane.idva, Lane.marac, Lane.by_and_for) if high else (Lane.specialist, Lane.by_and_for)
    if high and not granted:
        order = (Lane.marac,)
    decision.lanes = {lane: ranked[lane] for lane in order if ranked[lane]}
    helplines = ranked[Lane.helpline]
    helpline_name = helplines[0].name if helplines else _advice_helpline(summary, index)

    if not granted and not high:
        decision.outcome = Outcome.no_offer
        decision.lanes = {}
        decision.no_offer_reason = (
            f"no offer made: consent {consent_words} for a {summary.risk_band}-risk referral; "
            "ask the survivor and update consent to route it"
        )
        decision.advice = helpline_name
        return decision
    if high and not granted and not decision.lanes:
        decision.outcome = Outcome.no_offer
        decision.no_offer_reason = "no offer made: " + (
            "no MARAC available for this area" if consent.safeguarding_basis
            else f"high risk, consent {consent_words} and no recorded safeguarding basis"
        )
        decision.escalation = decision.no_offer_reason + "; ops to review"
        decision.advice = helpline_name
        return decision

    decision.offer_to = [services[0] for services in decision.lanes.values()]
    missing: list[str] = []
    no_idva = high and granted and Lane.idva not in decision.lanes
    if no_idva:
        missing.append("no IDVA service available")
    if high and Lane.marac not in decision.lanes:
        missing.append("no MARAC available for this area")
    if not high and not decision.lanes:
        missing.append("no community specialist service available")
    if outside is not None:
        missing.append(outside)
        decision.referrer_note = f"{outside[:1].upper()}{outside[1:]}: national services only; ops have been told"
    if no_idva or not decision.lanes:
        if helplines:
            fallback = helplines[0].model_copy(
                update={"reasons": (*helplines[0].reasons, "fallback: nothing local fits")}
            )
            decision.lanes[Lane.helpline] = [fallback, *helplines[1:]]
            decision.offer_to.append(fallback)
            if len(decision.offer_to) == 1:
                decision.outcome = Outcome.fallback
        else:
            # Say why: the helpline's own exclusion (consent, BSL, …) is what ops has to act on.
            why = next((decision.excluded[s.id] for s in index.national
                        if s.service_type == ServiceType.national_helpline and s.id in decision.excluded), None)
            missing.append("no national helpline the survivor can use"
                           + (f" ({why.removeprefix('excluded: ')})" if why else ""))
            decision.advice = helpline_name
    if not decision.offer_to:
        decision.outcome = Outcome.no_offer
        decision.no_offer_reason = "no offer made: " + "; ".join(missing)
    if missing:
        decision.escalation = "; ".join(missing)
    return decision


def _sla(service: ServiceRecord, band: str, area_hours: float | None) -> float | None:
    """The response window for this offer: the service's own, or the area protocol's if shorter."""
    own = service.response_sla_hours.get(band)
    windows = [h for h in (own, area_hours) if h is not None]
    return min(windows) if windows else None


def _advice_helpline(summary: CaseSummary, index: DirectoryIndex) -> str | None:
    """The helpline to name as advice when no offer can be made.

    Advice is not a referral: neither consent nor service-level eligibility (BSL, language) stops the
    referrer from passing a helpline on, so only the survivor's community and gender choose it.
    """
    shared = survivor_communities(summary)
    helplines = [s for s in index.national if s.service_type == ServiceType.national_helpline
                 and s.status == ServiceStatus.active
                 and not (s.genders and summary.gender and summary.gender not in s.genders)
                 and (not s.by_and_for or set(s.by_and_for) & set(shared))]
    if not helplines:
        return None
    return min(helplines, key=lambda s: (0 if s.by_and_for else 1, s.id)).name


def next_in_lane(
    lane: list[RoutedService],
    *,
    offered: Iterable[str],
    index: DirectoryIndex | None,
    open_offers: Mapping[str, int],
    consent: ConsentState | None = None,
    now: datetime | None = None,
) -> tuple[RoutedService | None, dict[str, str]]:
    """The next service in a stored lane not yet offered, re-checking the case's current consent (when
    given: it may have narrowed since the ranking was made), and status and capacity against the
    current directory; returns it (or ``None`` when the lane is exhausted) and whom it passed over, why.
    """
    done = set(offered)
    passed: dict[str, str] = {}
    for routed in lane:
        if routed.service_id in done:
            continue
        if consent is not None and now is not None:
            permitted, why = consent_covers(consent, service_type=routed.service_type,
                                            by_and_for=bool(routed.by_and_for),
                                            organisation_id=routed.organisation_id, now=now)
            if not permitted:
                passed[routed.service_id] = f"passed over: {why}"
                continue
        record = index.services.get(routed.service_id) if index is not None else None
        if index is not None and record is None:
            passed[routed.service_id] = "passed over: no longer in the directory"
            continue
        if record is not None:
            if record.status != ServiceStatus.active or not record.accepting:
                passed[routed.service_id] = "passed over: not accepting referrals (paused)"
                continue
            if record.max_open_offers is not None and open_offers.get(record.id, 0) >= record.max_open_offers:
                passed[routed.service_id] = (
                    f"passed over: at capacity ({open_offers.get(record.id, 0)} of {record.max_open_offers} open offers)"
                )
                continue
        return routed, passed
    return None, passed
