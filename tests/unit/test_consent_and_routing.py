"""The consent gate and the first routing rules (issue 5 extends these into the full scenario table)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.router.domain import Candidate, route
from shared.consent import consent_covers
from shared.events import (
    ByAndForPreference,
    CareSetting,
    CaseSummary,
    ConsentScope,
    ConsentState,
    ConsentStatus,
    RiskBand,
    RoutingPreferences,
)

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
ALL_SCOPES = tuple(ConsentScope)
LEEDS = "serves Leeds (E08000035)"


def consent(status=ConsentStatus.granted, scopes=ALL_SCOPES, **kw) -> ConsentState:
    return ConsentState(status=status, scopes=scopes, **kw)


@pytest.mark.parametrize(
    ("state", "service_type", "by_and_for", "allowed", "reason"),
    [
        (consent(), "idva", False, True, "consent covers idva"),
        (consent(scopes=(ConsentScope.specialist_da,)), "idva", False, False, "consent does not cover idva"),
        (consent(scopes=(ConsentScope.specialist_da,)), "community-outreach", True, False,
         "consent does not cover by-and-for-service"),
        (consent(expires_at=NOW - timedelta(seconds=1)), "idva", False, False, "consent expired"),
        (consent(status=ConsentStatus.withdrawn), "idva", False, False, "consent withdrawn"),
        (consent(status=ConsentStatus.refused, safeguarding_basis=True), "marac", False, True,
         "recorded high-risk safeguarding basis (MARAC)"),
        (consent(status=ConsentStatus.refused, safeguarding_basis=True), "idva", False, False, "consent refused"),
        (consent(scopes=(), organisations=("org-a",)), "idva", False, True, "consent names this organisation"),
    ],
)
def test_consent_covers(state, service_type, by_and_for, allowed, reason):
    assert consent_covers(state, service_type=service_type, by_and_for=by_and_for, organisation_id="org-a",
                          now=NOW) == (allowed, reason)


def candidate(service_id: str, service_type: str, **kw) -> Candidate:
    kw.setdefault("risk_levels", frozenset({"standard", "medium", "high"}))
    kw.setdefault("match_reason", LEEDS)
    return Candidate(service_id=service_id, organisation_id=f"org-{service_id}", name=service_id,
                     service_type=service_type, **kw)


DIRECTORY = [
    candidate("outreach", "community-outreach"),
    candidate("bme-outreach", "community-outreach", by_and_for=frozenset({"black-minoritised"})),
    candidate("idva", "idva"),
    candidate("health-idva", "health-idva"),
    candidate("marac", "marac"),
    candidate("helpline", "national-helpline", national=True, match_reason="national service"),
    candidate("perp", "perpetrator-programme"),
]


def summary(band=RiskBand.standard, setting=CareSetting.gp, characteristics=(), by_and_for=ByAndForPreference.no_preference):
    return CaseSummary(postcode_district="LS7", risk_band=band, setting=setting, characteristics=characteristics,
                       preferences=RoutingPreferences(by_and_for=by_and_for))


def offered(decision) -> list[str]:
    return [s.service_id for s in decision.offer_to]


def test_standard_risk_goes_to_a_community_service():
    decision = route(summary(), consent(), DIRECTORY, now=NOW)
    assert offered(decision) == ["outreach"] and decision.escalation is None
    assert decision.offer_to[0].reasons == (LEEDS, "community specialist service")


def test_shared_characteristic_ranks_by_and_for_first_unless_declined():
    shared = ("black-minoritised",)
    assert offered(route(summary(characteristics=shared), consent(), DIRECTORY, now=NOW)) == ["bme-outreach"]
    declined = summary(characteristics=shared, by_and_for=ByAndForPreference.declined)
    assert offered(route(declined, consent(), DIRECTORY, now=NOW)) == ["outreach"]


def test_high_risk_goes_to_idva_and_marac_in_parallel_with_health_idva_first_in_acute_settings():
    assert offered(route(summary(RiskBand.high), consent(), DIRECTORY, now=NOW)) == ["idva", "marac"]
    acute = summary(RiskBand.high, CareSetting.emergency_department)
    assert offered(route(acute, consent(), DIRECTORY, now=NOW)) == ["health-idva", "marac"]


def test_without_consent_high_risk_goes_only_to_marac_on_a_safeguarding_basis():
    no = consent(status=ConsentStatus.refused, scopes=(), safeguarding_basis=True)
    assert offered(route(summary(RiskBand.high), no, DIRECTORY, now=NOW)) == ["marac"]


def test_without_consent_lower_risk_makes_no_offer_and_says_why():
    decision = route(summary(), consent(status=ConsentStatus.not_asked, scopes=()), DIRECTORY, now=NOW)
    assert offered(decision) == [] and decision.escalation == "no consent for a standard-risk referral"


def test_paused_services_are_passed_over_and_the_reason_recorded():
    paused = [candidate("outreach", "community-outreach", accepting=False), *DIRECTORY[1:]]
    decision = route(summary(), consent(), paused, now=NOW)
    assert offered(decision) == ["bme-outreach"]
    assert decision.excluded["outreach"] == "excluded: not accepting referrals"


def test_nothing_local_falls_back_to_the_national_helpline_and_escalates():
    decision = route(summary(), consent(), [DIRECTORY[5]], now=NOW)
    assert offered(decision) == ["helpline"] and decision.escalation == "no local service fits"


def test_routing_is_deterministic_whatever_the_order_of_the_directory():
    forwards = route(summary(RiskBand.high), consent(), DIRECTORY, now=NOW)
    backwards = route(summary(RiskBand.high), consent(), list(reversed(DIRECTORY)), now=NOW)
    assert forwards == backwards
