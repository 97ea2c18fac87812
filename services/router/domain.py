"""Routing rules: pure functions from a case, the directory and current capacity to a ranked, explained
decision. No I/O here: the consumer and the API feed these functions and store what they return.

The rules (issues 5 and 12), in the order they are applied to every candidate service. Each lives in one
named function (in ``services.router.rules`` unless it says ``domain``) that ``route()`` composes:

1. **Area** (``area_candidates`` in domain; ``area_tier``, ``area_reach``): the case's postcode sector is
   located in the gazetteer copy (``shared.geography.locate``). A service is *local* when its coverage
   names the case's LAD, upper tier, ICB (from the sector's own sub-ICB shares) or postcode district,
   holding a material share (``MATERIAL_SHARE``, 5%); *regional* when it names the case's region;
   *national* when it covers the nation -- worked out from the coverage, never from the hand-set
   ``coverage_level`` label. The main (largest-share) authority's services rank before the other
   candidates', and the reasons say so; among equals the authority's own service comes before a county- or
   ICB-wide one. A postcode outside England (Wales, Scotland, Northern Ireland, a Crown dependency), a
   non-geographic or an unknown one gets the services covering its country (if any) and the national ones,
   and is escalated to ops with the reason.
2. **Risk lanes** (``risk_lane``, ``risk_exclusion``, ``setting_rank``): high risk goes, in parallel, to an
   IDVA service (a health IDVA first in an emergency department or maternity setting) and to the area's
   MARAC; medium and standard risk go to community specialist services. A service that does not take the
   case's risk band is excluded.
3. **Eligibility** (``eligibility_exclusion``) is hard: gender and age served, no recourse to public
   funds, BSL and language, abuse type, children and young people.
4. **Choices** (``choice_exclusion``, ``fit``, ``by_and_for_beside`` in domain): services or kinds the
   survivor declined are never offered; a preferred worker gender or language ranks a service up.
   Matching by-and-for services rank above generic ones unless the survivor declined by-and-for services;
   when she asked for by-and-for support, a matching one covering her area ranks first among the local
   services; where none is local, the best regional or national one is offered beside the best local one.
5. **Consent** (``consent_for``; ``consent_outcome`` in domain; ``shared.consent.consent_covers``, the
   rule notify and intake also apply): only services within the consent receive an offer; without consent
   a high-risk case goes only to the MARAC on a recorded safeguarding basis, and a lower-risk case gets no
   offer, with a helpline as advice.
6. **Capacity** (``capacity_exclusion``): paused services and those at their maximum open offers are
   passed over, and recorded.
7. **Never dropped, helplines visible** (``fallback``, ``helpline_advice``, ``advice_helpline`` in domain):
   when nothing fits, the matching national helpline is offered and the case is escalated to ops with the
   reason; otherwise the specialist national helplines the survivor can use (older people, honour-based
   abuse and forced marriage, LGBT+, Deaf, men) are named as advice beside the local offers.
8. **Deterministic** (``ranking_key``): every ordering ends with the service id, so the same case and
   directory always give the same ranking.

What the referrer is told (``services.router.referrer``: ``referrer_summary``, ``task_answer``): the kinds
of service offered, whether a by-and-for service was chosen, helplines, escalation; and, where no offer
will be made, a final FHIR Task status with coded reasons (docs/fhir-referral-profile.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from services.router.index import Bucket, DirectoryIndex, Entry, RoutingArea, resolve_case_area
from services.router.referrer import (
    FINAL_NO_OFFER,
    NoOffer,
    TaskAnswer,
    consent_code,
    referrer_summary,
    task_answer,
)
from services.router.rules import (
    ROLE_WORDS,
    CaseFacts,
    Lane,
    RankingKey,
    ServiceProfile,
    area_reach,
    capacity_exclusion,
    choice_exclusion,
    community_words,
    consent_for,
    eligibility_exclusion,
    fit,
    matches_by_and_for,
    ranking_key,
    setting_rank,
    survivor_communities,
)
from shared.consent import consent_covers
from shared.directory_contract import ServiceRecord
from shared.events import CaseArea, CaseSummary, ConsentState, RoutedService
from shared.reference import ServiceStatus, ServiceType

__all__ = [
    "RULE_VERSION",
    "Decision",
    "DirectoryIndex",
    "Lane",
    "NoOffer",
    "Outcome",
    "RoutingArea",
    "TaskAnswer",
    "next_in_lane",
    "resolve_case_area",
    "route",
    "survivor_communities",
    "task_answer",
]

RULE_VERSION = "2026.11-4"  # 4: tier from coverage, by-and-for first when asked for, helplines as advice

class Outcome(StrEnum):
    routed = "routed"
    fallback = "fallback"  # the national helpline, and ops told
    no_offer = "no-offer"


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
    # Specialist national helplines the survivor can use, named beside the offers as advice (rule 7).
    helplines: list[RoutedService] = field(default_factory=list)
    # Why no offer is made, as a code (``NoOffer``): it decides the referrer's Task status (``task_answer``).
    no_offer_code: str | None = None
    # The decision in words the referrer may see: kinds of service, by-and-for, helplines, escalation.
    referrer_summary: str = ""
    area: CaseArea | None = None
    rule_version: str = RULE_VERSION
    directory_version: str = ""

    def ranking(self) -> list[str]:
        """Every ranked service id, lane by lane (for tests and audits)."""
        return [s.service_id for services in self.lanes.values() for s in services]


Ranked = tuple[RankingKey, RoutedService]


# ---- the rules, composed ---------------------------------------------------------------------------


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
    area protocol's response window per risk band, carried on each offer. Each numbered rule lives in
    its own function (``services.router.rules`` and below); this one only composes them.
    """
    case = CaseFacts.of(summary, consent, now)
    area = resolve_case_area(summary, index)
    decision = Decision(outcome=Outcome.routed, directory_version=index.version, area=area.area)
    decision.notes.extend(explain_case(area, case))
    respond_within = (sla_hours or {}).get(summary.risk_band)
    pools: dict[Lane, list[Ranked]] = {lane: [] for lane in Lane}
    for profile, tier, code, rank in area_candidates(area, index, case, decision.excluded).values():
        ranked = assess(profile, case, area, tier=tier, code=code, area_rank=rank, open_offers=open_offers,
                        respond_within=respond_within, decision=decision)
        if ranked is None:
            continue
        lane = profile.lanes[case.band]
        if ranked[0][4] == 0 and lane in (Lane.idva, Lane.specialist):
            pools[Lane.by_and_for].append(ranked)
        pools[lane].append(ranked)
    ranked_lanes = by_and_for_beside(pools, case)
    decision.lanes = offered_lanes(ranked_lanes, case)
    helplines = ranked_lanes[Lane.helpline]
    if not consent_outcome(decision, case, helplines, index):
        fallback(decision, case, area, helplines, index)
    helpline_advice(decision, case, index)
    decision.referrer_summary = referrer_summary(decision, case)
    return decision


def explain_case(area: RoutingArea, case: CaseFacts) -> list[str]:
    """The decision's notes: where the case is, its risk lane, what the survivor shared, and consent."""
    notes = list(area.notes)
    if case.high:
        notes.append("high risk: an IDVA service and the area's MARAC, in parallel"
                     + ("; a health IDVA first in this hospital setting" if case.acute else ""))
    else:
        notes.append(f"{case.band} risk: community specialist services")
    if case.shared and case.wants_by_and_for:
        notes.append(f"survivor shared: {community_words(case.shared)}; matching by-and-for services rank first")
    elif case.shared:
        notes.append("the survivor declined by-and-for services")
    if not case.granted:
        notes.append(f"consent {case.consent_words}: only the MARAC, on the recorded safeguarding basis"
                     if case.high and case.consent.safeguarding_basis else f"consent {case.consent_words}")
    return notes


def area_candidates(area: RoutingArea, index: DirectoryIndex, case: CaseFacts, excluded: dict[str, str]
                    ) -> dict[str, tuple[ServiceProfile, int, str | None, int]]:
    """Rule 1: the services covering the case's area, then the national ones, each with its area tier, the
    code that matched and its area rank (0: covers the main authority or the whole area; 1: another
    material candidate only). Those the case's risk band rules out (rule 2) go straight to ``excluded``.

    Where the sector spans several authorities, a service covering only a smaller (material) candidate is
    local too, ranked after the main authority's, and its reason gives the candidate's share."""
    found: dict[str, tuple[ServiceProfile, int, str | None, int]] = {}
    buckets, main = index.buckets, area.main
    # Rule 4's by-and-for exclusions in bulk, unless the survivor declined services by name or kind
    # (that reason comes first, so each service is then looked at on its own).
    bulk = not case.declined
    matching: list[str] = []

    def add(entries: Iterable[Entry], code: str | None, rank: int) -> None:
        for profile, tier in entries:
            previous = found.get(profile.id)
            if previous is not None and previous[3] <= rank:
                continue
            found[profile.id] = (profile, tier, code, rank)

    def take(bucket: Bucket, code: str | None, rank: int) -> None:
        if bucket.excluded:
            excluded.update(bucket.excluded)
        if not bulk:
            add(bucket.live, code, rank)
            return
        add(bucket.generic, code, rank)
        if not bucket.by_community:
            return
        if not case.wants_by_and_for:
            excluded.update(bucket.by_and_for_declined)
            return
        excluded.update(bucket.by_and_for_not_shared)
        for community in case.shared_set:
            entries = bucket.by_community.get(community)
            if entries:
                matching.extend(p.id for p, _ in entries)
                add(entries, code, rank)

    for code in area.codes:
        by_band = buckets.get(code)
        if by_band is not None:
            take(by_band[case.band], code, 0 if code in main else 1)
    national = index.national_buckets.get(case.band)
    if national is not None:
        # Behind a service that matched the case's own country code (a helpline for Wales, say).
        take(national, None, 1)
    for service_id in matching:
        excluded.pop(service_id, None)
    return found


def assess(profile: ServiceProfile, case: CaseFacts, area: RoutingArea, *, tier: int, code: str | None,
           area_rank: int, open_offers: Mapping[str, int], respond_within: float | None, decision: Decision
           ) -> Ranked | None:
    """Rules 3 to 6 for one candidate: its ranking key and offer, or None with the reason recorded."""
    lane = profile.lanes[case.band]
    why = choice_exclusion(profile, case) or eligibility_exclusion(profile, case)
    if why is not None:
        decision.excluded[profile.id] = f"excluded: {why}"
        return None
    if case.high and lane is Lane.specialist and not matches_by_and_for(profile, case):
        # A high-risk case goes to an IDVA; a community service only as the by-and-for offer beside it.
        decision.excluded[profile.id] = "excluded: high risk goes to an IDVA service"
        return None
    permitted, consent_reason = consent_for(profile, case)
    if not permitted:
        decision.excluded[profile.id] = f"excluded: {consent_reason}"
        return None
    service = profile.record
    why = capacity_exclusion(service, open_offers)
    if why is not None:
        decision.passed_over[profile.id] = why
        return None
    bf_class, specialism, preference, fit_reasons = fit(profile, case)
    kind = profile.kind
    role = ROLE_WORDS[lane]
    if case.acute and kind == ServiceType.health_idva and lane is Lane.idva:
        role = "health IDVA, first in a hospital setting"
    key = ranking_key(tier=tier, area_rank=area_rank, setting_rank=setting_rank(kind, lane, case.acute),
                      bf_class=bf_class, specialism=specialism, preference=preference, service_id=profile.id,
                      reach=area_reach(code), by_and_for_first=case.asked_for_by_and_for)
    routed = RoutedService(
        service_id=profile.id,
        organisation_id=service.organisation_id,
        service_type=kind,
        name=service.name,
        reasons=(area.area_reason(code, tier, area_rank), role, *fit_reasons, consent_reason),
        by_and_for=profile.by_and_for_sorted,
        respond_within_hours=_sla(service, case.band, respond_within),
    )
    return key, routed


def by_and_for_beside(pools: dict[Lane, list[Ranked]], case: CaseFacts) -> dict[Lane, list[RoutedService]]:
    """Rule 4 (choices): each lane ranked; a matching by-and-for service at the top of the main lane needs
    no separate offer; otherwise the best matching by-and-for service (regional or national when none is
    local) goes beside it, unless the survivor declined by-and-for services."""
    ranked = {lane: [r for _, r in sorted(pool, key=lambda item: item[0])] for lane, pool in pools.items()}
    primary = Lane.idva if case.high else Lane.specialist
    bf_ids = {r.service_id for r in ranked[Lane.by_and_for]}
    top_is_matching = bool(ranked[primary]) and ranked[primary][0].service_id in bf_ids
    if top_is_matching or not (case.shared and case.wants_by_and_for):
        ranked[Lane.by_and_for] = []
    else:
        ranked[primary] = [r for r in ranked[primary] if r.service_id not in bf_ids]
        if ranked[Lane.by_and_for]:
            top = ranked[Lane.by_and_for][0]
            local = min(key[0] for key, _ in pools[Lane.by_and_for]) == 0
            beside = (f"offered beside the {'IDVA service' if case.high else 'best local service'}" if local
                      else "no matching by-and-for service is local: offered beside the best local service")
            ranked[Lane.by_and_for][0] = top.model_copy(update={"reasons": (*top.reasons, beside)})
    return ranked


def offered_lanes(ranked: dict[Lane, list[RoutedService]], case: CaseFacts) -> dict[Lane, list[RoutedService]]:
    """Only the lanes with services, in a fixed order; without consent a high-risk case has the MARAC only
    (rule 5: the recorded safeguarding basis)."""
    order: tuple[Lane, ...] = (Lane.idva, Lane.marac, Lane.by_and_for) if case.high else (
        Lane.specialist, Lane.by_and_for)
    if case.high and not case.granted:
        order = (Lane.marac,)
    return {lane: ranked[lane] for lane in order if ranked[lane]}


def consent_outcome(decision: Decision, case: CaseFacts, helplines: list[RoutedService],
                    index: DirectoryIndex) -> bool:
    """Rule 5 (the decision): without consent a lower-risk case gets no offer, with a helpline as advice;
    a high-risk case with no MARAC to go to on a safeguarding basis gets none either, and ops are told.
    True when that settles the decision."""
    if case.granted:
        return False
    if not case.high:
        decision.outcome = Outcome.no_offer
        decision.lanes = {}
        decision.no_offer_code = consent_code(case)
        decision.no_offer_reason = f"no offer made: consent {case.consent_words} for a {case.band}-risk referral" + (
            "" if decision.no_offer_code in FINAL_NO_OFFER else "; ask the survivor and update consent to route it")
        decision.advice = helplines[0].name if helplines else advice_helpline(case.summary, index)
        return True
    if not decision.lanes:
        decision.outcome = Outcome.no_offer
        decision.no_offer_reason = "no offer made: " + (
            "no MARAC available for this area" if case.consent.safeguarding_basis
            else f"high risk, consent {case.consent_words} and no recorded safeguarding basis"
        )
        decision.escalation = decision.no_offer_reason + "; ops to review"
        decision.advice = helplines[0].name if helplines else advice_helpline(case.summary, index)
        decision.no_offer_code = NoOffer.no_marac if case.consent.safeguarding_basis else NoOffer.high_risk_no_consent
        return True
    return False


def fallback(decision: Decision, case: CaseFacts, area: RoutingArea, helplines: list[RoutedService],
             index: DirectoryIndex) -> None:
    """Rule 7 (never dropped): offer the first service of each lane; when a lane the risk needs is empty
    (no IDVA, no MARAC, no community service), the matching national helpline is offered and ops are
    told why; when nothing at all can be offered, the decision says so."""
    high = case.high
    decision.offer_to = [services[0] for services in decision.lanes.values()]
    missing: list[str] = []
    no_idva = high and case.granted and Lane.idva not in decision.lanes
    if no_idva:
        missing.append("no IDVA service available")
    if high and Lane.marac not in decision.lanes:
        missing.append("no MARAC available for this area")
    if not high and not decision.lanes:
        missing.append("no community specialist service available")
    if area.outside is not None:
        missing.append(area.outside)
        decision.referrer_note = f"{area.outside[:1].upper()}{area.outside[1:]}: national services only; ops have been told"
    if no_idva or not decision.lanes:
        if helplines:
            first = helplines[0].model_copy(update={"reasons": (*helplines[0].reasons, "fallback: nothing local fits")})
            decision.lanes[Lane.helpline] = [first, *helplines[1:]]
            decision.offer_to.append(first)
            if len(decision.offer_to) == 1:
                decision.outcome = Outcome.fallback
        else:
            # Say why: the helpline's own exclusion (consent, BSL, …) is what ops has to act on.
            why = next((decision.excluded[s.id] for s in index.national
                        if s.service_type == ServiceType.national_helpline and s.id in decision.excluded), None)
            missing.append("no national helpline the survivor can use"
                           + (f" ({why.removeprefix('excluded: ')})" if why else ""))
            decision.advice = advice_helpline(case.summary, index)
    if not decision.offer_to:
        decision.outcome = Outcome.no_offer
        decision.no_offer_reason = "no offer made: " + "; ".join(missing)
        decision.no_offer_code = NoOffer.no_eligible_service
    if missing:
        decision.escalation = "; ".join(missing)


def helpline_advice(decision: Decision, case: CaseFacts, index: DirectoryIndex) -> None:
    """Rule 7 (helplines are visible): the specialist national helplines the survivor can use -- by and for
    a community she shared (older people, LGBT+, Deaf, men, ...) or for the abuse she disclosed (honour-based
    abuse and forced marriage) -- are named beside the offers as advice, unless one is offered already.

    Advice is not a referral: neither consent nor service-level eligibility (a by-and-for helpline's own
    abuse-type focus, BSL, language) limits it; her choices (a declined kind of service, declined by-and-for
    services) and who the helpline serves (gender) do."""
    offered = {s.service_id for s in decision.offer_to}
    advice: list[tuple[RankingKey, RoutedService]] = []
    gender = case.summary.gender
    for profile in index.helplines:
        if profile.id in offered or not (profile.by_and_for or profile.abuse_types):
            continue
        if choice_exclusion(profile, case) is not None:
            continue  # declined, or by and for a community she did not share
        genders = profile.record.genders
        if genders and gender and gender not in ("unknown", *genders):
            continue
        # By and for her community (choice_exclusion checked it), or for the abuse she disclosed.
        if not profile.by_and_for and not profile.abuse_types & set(case.summary.abuse_types):
            continue
        bf_class, specialism, preference, fit_reasons = fit(profile, case)
        key = ranking_key(tier=2, area_rank=0, setting_rank=0, bf_class=bf_class, specialism=specialism,
                          preference=preference, service_id=profile.id)
        advice.append((key, RoutedService(
            service_id=profile.id, organisation_id=profile.record.organisation_id, service_type=profile.kind,
            name=profile.record.name, by_and_for=profile.by_and_for_sorted,
            reasons=("national service", "specialist national helpline: advice beside the offers", *fit_reasons))))
    decision.helplines = [r for _, r in sorted(advice, key=lambda item: item[0])]
    if decision.helplines:
        names = ", ".join(h.name for h in decision.helplines)
        decision.notes.append(f"specialist national helplines named as advice: {names}")


def _sla(service: ServiceRecord, band: str, area_hours: float | None) -> float | None:
    """The response window for this offer: the service's own, or the area protocol's if shorter."""
    own = service.response_sla_hours.get(band)
    if own is None:
        return area_hours
    return own if area_hours is None else min(own, area_hours)


def advice_helpline(summary: CaseSummary, index: DirectoryIndex) -> str | None:
    """Rule 7: the helpline to name as advice when no offer can be made.

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
