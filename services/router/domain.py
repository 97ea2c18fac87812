"""Routing rules: pure functions from a case and the candidate services to a ranked, explained decision.

First version (issue 5 refines it): area is the directory's coverage match; high risk goes to an IDVA
service (a health IDVA first in acute settings) and the MARAC in parallel; lower risk to community
specialist services, by-and-for first where the survivor shared a matching characteristic and did not
decline; consent limits who may be offered; when nothing fits, the national helpline and ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from shared.events import ByAndForPreference, CareSetting, CaseSummary, ConsentState, ConsentStatus, RiskBand, RoutedService
from shared.consent import consent_covers
from shared.reference import ServiceType

RULE_VERSION = "2026.11-1"
ACUTE_SETTINGS = frozenset({CareSetting.emergency_department, CareSetting.maternity})
COMMUNITY_TYPES = frozenset({ServiceType.community_outreach, ServiceType.refuge, ServiceType.isva,
                             ServiceType.sv_counselling, ServiceType.chidva})


@dataclass(frozen=True)
class Candidate:
    """A service as the router sees it (from the directory)."""

    service_id: str
    organisation_id: str
    name: str
    service_type: str
    by_and_for: frozenset[str] = frozenset()
    risk_levels: frozenset[str] = frozenset()
    accepting: bool = True
    national: bool = False
    match_reason: str = ""


@dataclass
class Decision:
    offer_to: list[RoutedService] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)
    escalation: str | None = None
    no_offer_reason: str | None = None
    rule_version: str = RULE_VERSION


def consent_permits(consent: ConsentState, candidate: Candidate, now: datetime) -> bool:
    permitted, _ = consent_covers(
        consent,
        service_type=candidate.service_type,
        by_and_for=bool(candidate.by_and_for),
        organisation_id=candidate.organisation_id,
        now=now,
    )
    return permitted


def _routed(candidate: Candidate, *reasons: str) -> RoutedService:
    return RoutedService(
        service_id=candidate.service_id,
        organisation_id=candidate.organisation_id,
        service_type=candidate.service_type,
        name=candidate.name,
        reasons=tuple(r for r in (candidate.match_reason, *reasons) if r),
        by_and_for=tuple(sorted(candidate.by_and_for)),
    )


def route(summary: CaseSummary, consent: ConsentState, candidates: list[Candidate], *, now: datetime) -> Decision:
    """Decide which services to offer the case to, and why; deterministic for the same inputs."""
    decision = Decision()
    eligible: list[Candidate] = []
    for candidate in sorted(candidates, key=lambda c: (c.national, c.service_id)):
        if candidate.service_type == ServiceType.perpetrator_programme:
            continue
        if not candidate.accepting:
            decision.excluded[candidate.service_id] = "excluded: not accepting referrals"
        elif candidate.risk_levels and summary.risk_band not in candidate.risk_levels:
            decision.excluded[candidate.service_id] = f"excluded: does not take {summary.risk_band} risk"
        else:
            eligible.append(candidate)

    no_consent = consent.status is not ConsentStatus.granted
    if summary.risk_band is RiskBand.high:
        marac = [c for c in eligible if c.service_type == ServiceType.marac and not c.national]
        idva_order = (
            [ServiceType.health_idva, ServiceType.idva]
            if summary.setting in ACUTE_SETTINGS
            else [ServiceType.idva, ServiceType.health_idva]
        )
        idvas = sorted(
            (c for c in eligible if c.service_type in idva_order and not c.national),
            key=lambda c: idva_order.index(ServiceType(c.service_type)),
        )
        if no_consent:
            if consent.safeguarding_basis and marac:
                decision.offer_to.append(_routed(marac[0], "high risk: MARAC on the recorded safeguarding basis"))
            else:
                decision.no_offer_reason = "high risk without consent or a recorded safeguarding basis"
        else:
            if idvas and consent_permits(consent, idvas[0], now):
                decision.offer_to.append(_routed(idvas[0], "high risk: IDVA service"))
            if marac and consent_permits(consent, marac[0], now):
                decision.offer_to.append(_routed(marac[0], "high risk: area MARAC"))
    else:
        community = [c for c in eligible if c.service_type in COMMUNITY_TYPES and not c.national]
        shared = set(summary.characteristics)
        wants_by_and_for = summary.preferences.by_and_for is not ByAndForPreference.declined
        # Matching by-and-for services first, then generic ones; a by-and-for service for a community
        # the survivor did not share with us comes last.
        ranked = sorted(
            community,
            key=lambda c: (
                0 if wants_by_and_for and shared & c.by_and_for else 2 if c.by_and_for else 1,
                c.service_id,
            ),
        )
        if no_consent:
            decision.no_offer_reason = f"no consent for a {summary.risk_band}-risk referral"
        else:
            for candidate in ranked:
                if consent_permits(consent, candidate, now):
                    matched = sorted(shared & candidate.by_and_for) if wants_by_and_for else []
                    reason = f"by-and-for {', '.join(matched)} survivors" if matched else "community specialist service"
                    decision.offer_to.append(_routed(candidate, reason))
                    break

    if not decision.offer_to:
        helpline = next((c for c in eligible if c.service_type == ServiceType.national_helpline), None)
        reason = decision.no_offer_reason or "no local service fits"
        if decision.no_offer_reason is None and helpline is not None and not no_consent:
            decision.offer_to.append(_routed(helpline, "fallback: national helpline"))
        decision.escalation = reason
    return decision
