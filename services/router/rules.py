"""The numbered routing rules, one small named function each, as ``services.router.domain.route`` applies
them. Pure functions: no I/O, no clock (``now`` is given).

A clinical safety reviewer can point at the one function a rule lives in:

1. Area tier ............ ``area_tier`` (local / regional / national from the coverage code that matched),
                           ``area_reach``; ``area_candidates`` (in ``domain``)
2. Risk lanes ........... ``risk_lane``, ``risk_exclusion``, ``setting_rank``
3. Eligibility .......... ``eligibility_exclusion``
4. Choices .............. ``choice_exclusion``, ``matches_by_and_for``, ``fit``; ``by_and_for_beside`` (in ``domain``)
5. Consent .............. ``consent_for`` (each service); ``consent_outcome`` (in ``domain``: the decision)
6. Capacity ............. ``capacity_exclusion``
7. Fallback, helplines .. ``fallback``, ``helpline_advice``, ``advice_helpline`` (in ``domain``)
8. Determinism .......... ``ranking_key``

What the per-case functions need of a service is worked out once per directory copy (``ServiceProfile``)
and of a case once per case (``CaseFacts``): routing a case stays well under a millisecond with 10,000
services (bench/router_match.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache

from shared.consent import consent_covers
from shared.directory_contract import ServiceRecord
from shared.events import (
    ByAndForPreference,
    CareSetting,
    CaseSummary,
    ConsentState,
    ConsentStatus,
    RiskBand,
)
from shared.geography import canonical_code
from shared.reference import NATIONAL, AgeBand, Community, Need, ServiceStatus, ServiceType

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
TIER_WORDS = ("local", "regional", "national")
# Risk bands as plain strings: they key the per-service tables looked up for every candidate, and a str
# hashes in C where an enum member hashes in Python.
BANDS = tuple(band.value for band in RiskBand)


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


def community_words(communities: Iterable[str]) -> str:
    return _words(tuple(sorted(communities)))


@lru_cache(maxsize=1024)
def _words(communities: tuple[str, ...]) -> str:
    # Cached: exclusion reasons name communities for many services on every case.
    return ", ".join(COMMUNITY_WORDS.get(c, c) for c in communities)  # type: ignore[call-overload]


# ---- what a case brings, worked out once per case -------------------------------------------------


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


@dataclass
class CaseFacts:
    """What the rules ask of a case, read from its summary and consent once rather than per service."""

    summary: CaseSummary
    consent: ConsentState
    now: datetime
    band: str
    high: bool
    acute: bool
    shared: dict[str, str]
    shared_set: frozenset[str]
    wants_by_and_for: bool
    # She asked for by-and-for support (not merely did not decline it): a matching one then ranks first.
    asked_for_by_and_for: bool
    declined: frozenset[str]
    young: bool
    age: tuple[int, int] | None
    nrpf: bool
    bsl: bool
    safe_accommodation: bool
    case_types: frozenset[str]
    granted: bool
    consent_words: str
    _consent: dict[tuple[str, bool, bool], tuple[bool, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, summary: CaseSummary, consent: ConsentState, now: datetime) -> CaseFacts:
        shared = survivor_communities(summary)
        expired = consent.expires_at is not None and consent.expires_at <= now
        needs = summary.needs
        return cls(
            summary=summary, consent=consent, now=now, band=summary.risk_band.value,
            high=summary.risk_band is RiskBand.high, acute=summary.setting in ACUTE_SETTINGS,
            shared=shared, shared_set=frozenset(shared),
            wants_by_and_for=summary.preferences.by_and_for is not ByAndForPreference.declined,
            asked_for_by_and_for=summary.preferences.by_and_for is ByAndForPreference.wanted,
            declined=frozenset(summary.preferences.declined_service_types), young=is_young_person(summary),
            age=AGE_RANGES.get(AgeBand(summary.age_band)) if summary.age_band in AGE_RANGES else None,
            nrpf=Need.no_recourse_to_public_funds in needs, bsl=Need.bsl in needs,
            safe_accommodation=Need.safe_accommodation in needs,
            # A case with no abuse type recorded is a domestic abuse case.
            case_types=frozenset(summary.abuse_types) or frozenset({"domestic-abuse"}),
            granted=consent.status is ConsentStatus.granted and not expired,
            consent_words="expired" if consent.status is ConsentStatus.granted and expired else str(consent.status),
        )


# ---- a service, worked out once per directory copy ------------------------------------------------


@dataclass(slots=True)
class ServiceProfile:
    """A service with what the rules ask of it worked out once per directory copy, not once per case."""

    record: ServiceRecord
    id: str
    kind: str
    by_and_for: frozenset[str]
    by_and_for_sorted: tuple[str, ...]
    languages: frozenset[str]
    abuse_types: frozenset[str]
    # Rule 2 by risk band: the lane a case of that band would use, or why it cannot go here at all.
    lanes: Mapping[str, Lane]
    band_exclusions: Mapping[str, str]
    # Rule 4's reason for a survivor who has not shared its community (by-and-for services only).
    not_shared_reason: str = ""
    # Rule 3: does it restrict anything but BSL? Most services do not, and skip the checks.
    restricted: bool = True

    @classmethod
    def of(cls, record: ServiceRecord) -> ServiceProfile:
        lanes, exclusions = _band_answers(record.service_type, record.status, record.risk_levels)
        by_and_for = tuple(sorted(record.by_and_for))
        return cls(record=record, id=record.id, kind=record.service_type, by_and_for=frozenset(by_and_for),
                   by_and_for_sorted=by_and_for, languages=frozenset(record.languages),
                   abuse_types=frozenset(record.abuse_types), lanes=lanes, band_exclusions=exclusions,
                   not_shared_reason=f"excluded: {not_shared_words(by_and_for)}" if by_and_for else "",
                   restricted=bool(record.genders or record.min_age is not None or record.max_age is not None
                                   or record.service_type in (ServiceType.chidva, ServiceType.refuge)
                                   or not record.accepts_nrpf or record.languages or record.abuse_types))


@lru_cache(maxsize=256)
def _band_answers(service_type: str, status: str, risk_levels: tuple[str, ...]
                  ) -> tuple[Mapping[str, Lane], Mapping[str, str]]:
    """Rule 2 for every risk band, for services of one kind, status and risk levels (shared: read-only)."""
    lanes: dict[str, Lane] = {}
    exclusions: dict[str, str] = {}
    for band in BANDS:
        why = risk_exclusion(service_type, band, status=status, risk_levels=risk_levels)
        if why is None:
            lane = risk_lane(service_type, band)
            assert lane is not None
            lanes[band] = lane
        else:
            exclusions[band] = why
    return lanes, exclusions


# ---- rule 1: area tier ----------------------------------------------------------------------------


# ONS code prefixes: an English region (E12), a country (E92 England, W92 Wales, S92 Scotland, N92 NI).
REGION_PREFIX = "E12"
COUNTRY_PREFIXES = frozenset({"E92", "W92", "S92", "N92"})


def area_tier(code: str | None) -> int:
    """Rule 1: how local a service is for a case, from the coverage code that matched the case's area:
    0 local (the case's LAD, upper tier, ICB or postcode district), 1 regional (its region), 2 national
    (``national`` or its country; ``None`` for a service matched only by its national coverage).

    Worked out from the coverage, not from the service's ``coverage_level`` label, which ops set by hand
    and can set inconsistently: a service covering the case's ICB is local there whatever it is called."""
    if code is None or code == NATIONAL or code[:3] in COUNTRY_PREFIXES:
        return 2
    return 1 if code.startswith(REGION_PREFIX) else 0


def area_reach(code: str | None) -> int:
    """Rule 1 (a tie-break among local services): one for the case's own authority or postcode district (0)
    before one for its county (1) or its whole ICB (2), other things being equal."""
    if code is None:
        return 3
    return {"E10": 1, "E54": 2, "E38": 2}.get(code[:3], 0)


def canonical_coverage(code: str) -> str:
    # A July 2022 ICB code covers its April 2024 successor.
    return canonical_code(code.upper())


# ---- rule 2: risk lanes ---------------------------------------------------------------------------


def risk_lane(service_type: str, band: str) -> Lane | None:
    """Rule 2: the lane a service of this kind is in for a case of this risk band, or None (not a route).

    High risk goes, in parallel, to an IDVA service and to the area's MARAC (community services only as a
    by-and-for offer beside them); medium and standard risk go to community specialist services."""
    high = band == RiskBand.high
    if service_type == ServiceType.national_helpline:
        return Lane.helpline
    if service_type == ServiceType.marac:
        return Lane.marac if high else None
    if service_type in COMMUNITY_TYPES or (high and service_type in IDVA_TYPES):
        return Lane.idva if high and service_type in IDVA_TYPES else Lane.specialist
    return None


def risk_exclusion(service_type: str, band: str, *, status: str, risk_levels: tuple[str, ...]) -> str | None:
    """Rule 2 (and the service's status): why no case of this risk band can go to a service of this kind,
    status and risk levels, or None."""
    if risk_lane(service_type, band) is None:
        return ("excluded: IDVA and MARAC are for high-risk cases" if service_type in HIGH_RISK_TYPES
                else f"excluded: not a {band}-risk route")
    if status != ServiceStatus.active:
        return f"excluded: {status.replace('-', ' ')}"
    if risk_levels and band not in risk_levels:
        return f"excluded: does not take {band} risk"
    return None


# ---- rule 3: eligibility --------------------------------------------------------------------------


def eligibility_exclusion(profile: ServiceProfile, case: CaseFacts) -> str | None:
    """Rule 3: why the survivor cannot use this service (hard eligibility), or None: gender and age served,
    children and young people, no recourse to public funds, BSL and language, abuse type, refuge need."""
    if not profile.restricted and not case.bsl:
        return None
    service = profile.record
    summary = case.summary
    if service.genders and summary.gender and summary.gender not in ("unknown", *service.genders):
        return f"serves {' and '.join(service.genders)} survivors only"
    if case.age is not None and (service.min_age is not None or service.max_age is not None):
        low, high = case.age
        if (service.min_age is not None and high < service.min_age) or (
            service.max_age is not None and low > service.max_age
        ):
            return f"does not serve age band {summary.age_band}"
    kind = profile.kind
    if kind == ServiceType.chidva and not case.young:
        return "for children and young people"
    if case.nrpf and not service.accepts_nrpf:
        return "does not accept survivors with no recourse to public funds"
    if case.bsl and not service.bsl and kind != ServiceType.marac:
        return "no BSL provision, which the survivor needs"
    if summary.language and profile.languages and summary.language not in profile.languages:
        return f"does not work in {LANGUAGE_WORDS.get(summary.language, summary.language)}"
    if profile.abuse_types and not profile.abuse_types & case.case_types:
        return f"works only with {', '.join(service.abuse_types)}"
    if kind == ServiceType.refuge and not case.safe_accommodation:
        return "refuge: no safe accommodation need recorded"
    return None


# ---- rule 4: choices ------------------------------------------------------------------------------


def choice_exclusion(profile: ServiceProfile, case: CaseFacts) -> str | None:
    """Rule 4 (the hard part): services or kinds the survivor declined are never offered; a by-and-for
    service is for survivors of its community, so it is not offered to a survivor who has not shared that
    characteristic (the provider would have to decline, and the survivor would wait)."""
    declined = case.declined
    if declined and (profile.kind in declined or profile.id in declined
                     or profile.record.organisation_id in declined):
        return "the survivor declined this service or kind of service"
    if profile.by_and_for:
        if not case.wants_by_and_for:
            return BY_AND_FOR_DECLINED
        if not profile.by_and_for & case.shared_set:
            return not_shared_words(profile.by_and_for_sorted)
    return None


BY_AND_FOR_DECLINED = "the survivor declined by-and-for services"
BY_AND_FOR_DECLINED_REASON = f"excluded: {BY_AND_FOR_DECLINED}"


def not_shared_words(by_and_for: tuple[str, ...]) -> str:
    return f"by and for {community_words(by_and_for)} survivors, which the survivor has not shared"


def matches_by_and_for(profile: ServiceProfile, case: CaseFacts) -> bool:
    """Rule 4: a by-and-for service for a community the survivor shared, when she has not declined them."""
    return case.wants_by_and_for and bool(profile.by_and_for & case.shared_set)


def fit(profile: ServiceProfile, case: CaseFacts) -> tuple[int, int, int, list[str]]:
    """Rule 4 (ranking): how well an eligible service fits: (by-and-for class, specialism, preference) and
    the reasons. By-and-for class 0 is a service by and for a community the survivor shared, 1 a generic one;
    a preferred worker gender or language ranks a service up."""
    service = profile.record
    summary = case.summary
    reasons: list[str] = []
    matched = sorted(profile.by_and_for & case.shared_set) if case.wants_by_and_for else []
    if matched:
        why = sorted({case.shared[c] for c in matched})
        reasons.append(f"by-and-for {community_words(matched)} survivors, matches {' and '.join(why)}")
        bf_class = 0
    else:
        bf_class = 1
    specialism = 0
    if profile.abuse_types:
        for abuse in sorted(SPECIALIST_ABUSE_TYPES & profile.abuse_types & case.case_types):
            specialism += 1
            reasons.append(f"specialist in {abuse.replace('-', ' ')}")
    if profile.kind == ServiceType.refuge:
        specialism += 1
        reasons.append("safe accommodation, as needed")
    if profile.kind == ServiceType.chidva:
        specialism += 1
        reasons.append("for children and young people")
    if case.bsl and service.bsl:
        reasons.append("BSL provision")
    preference = 0
    prefs = summary.preferences
    if prefs.worker_gender and prefs.worker_gender in service.worker_genders:
        preference += 1
        reasons.append(f"offers a {prefs.worker_gender} worker, as preferred")
    if prefs.language and prefs.language in profile.languages:
        preference += 1
        reasons.append(f"works in {LANGUAGE_WORDS.get(prefs.language, prefs.language)}, as preferred")
    return bf_class, specialism, preference, reasons


# ---- rule 5: consent ------------------------------------------------------------------------------


def consent_for(profile: ServiceProfile, case: CaseFacts) -> tuple[bool, str]:
    """Rule 5: may this service receive an offer under the case's consent (``shared.consent.consent_covers``,
    the rule notify and intake apply too)? The answer depends only on the kind of service, whether it is
    by-and-for and whether consent names its organisation, so it is worked out once per case for each."""
    record = profile.record
    named = record.organisation_id in case.consent.organisations
    key = (profile.kind, bool(profile.by_and_for), named)
    answer = case._consent.get(key)
    if answer is None:
        answer = case._consent[key] = consent_covers(
            case.consent, service_type=profile.kind, by_and_for=bool(profile.by_and_for),
            organisation_id=record.organisation_id, now=case.now)
    return answer


# ---- rule 6: capacity -----------------------------------------------------------------------------


def capacity_exclusion(service: ServiceRecord, open_offers: Mapping[str, int]) -> str | None:
    """Rule 6: paused services and those at their maximum open offers are passed over (and recorded)."""
    if not service.accepting:
        return "passed over: not accepting referrals (paused)"
    if service.max_open_offers is not None and open_offers.get(service.id, 0) >= service.max_open_offers:
        return f"passed over: at capacity ({open_offers.get(service.id, 0)} of {service.max_open_offers} open offers)"
    return None


# ---- rule 8: determinism --------------------------------------------------------------------------


def ranking_key(*, tier: int, area_rank: int, setting_rank: int, bf_class: int, specialism: int, preference: int,
                service_id: str, reach: int = 0, by_and_for_first: bool = False) -> RankingKey:
    """Rule 8 (with 1, 2 and 4): nearer first; when the survivor asked for by-and-for support, a matching
    by-and-for service first among those as near (rule 4); then the main authority first, the setting's
    IDVA first, matching by-and-for first, specialism and preferences, the more particular coverage; ends
    with the service id, so the same case and directory always give the same ranking."""
    return (tier, bf_class if by_and_for_first else 0, area_rank, setting_rank, bf_class, -specialism, -preference,
            reach, service_id)


RankingKey = tuple[int, int, int, int, int, int, int, int, str]


def setting_rank(kind: str, lane: Lane, acute: bool) -> int:
    """Rule 2: in a hospital setting a health IDVA comes first, elsewhere a community IDVA; a young person's
    children's IDVA is the IDVA route for them."""
    if lane is not Lane.idva:
        return 0
    if kind == ServiceType.chidva:
        return -1
    if acute:
        return 0 if kind == ServiceType.health_idva else 1
    return 1 if kind == ServiceType.health_idva else 0
