"""The consent gate (the routing rules are in test_routing_rules.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.consent import consent_covers
from shared.events import ConsentScope, ConsentState, ConsentStatus

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
ALL_SCOPES = tuple(ConsentScope)


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
