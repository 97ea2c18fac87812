"""What the referrer's Task says for each no-offer decision (issue 12; docs/fhir-referral-profile.md):
``rejected`` only where no offer will be made, whatever happens next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.router.domain import route, task_answer
from shared.events import (
    CareSetting,
    CaseSummary,
    ConsentScope,
    ConsentState,
    ConsentStatus,
    RiskBand,
    TaskStatus,
)
from tests.unit.router_directory import directory_index

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
INDEX = directory_index()
S, H = RiskBand.standard, RiskBand.high


def case(band: RiskBand = S, district: str = "LS7", **kw: Any) -> CaseSummary:
    return CaseSummary(postcode_district=district, risk_band=band, setting=CareSetting.gp, **kw)


def consent(status: ConsentStatus = ConsentStatus.granted, **kw: Any) -> ConsentState:
    return ConsentState(status=status, scopes=tuple(ConsentScope) if status is ConsentStatus.granted else (), **kw)


@pytest.mark.parametrize(("summary", "state", "expected"), [
    (case(), consent(ConsentStatus.refused), (TaskStatus.rejected, "no-offer", "consent-refused")),
    (case(RiskBand.medium), consent(ConsentStatus.withdrawn), (TaskStatus.rejected, "no-offer", "consent-withdrawn")),
    (case(district="ZZ9", needs=("bsl",)), consent(), (TaskStatus.rejected, "no-offer", "no-eligible-service")),
    (case(), consent(ConsentStatus.not_asked), (TaskStatus.requested, "awaiting-consent", "consent-not-asked")),
    (case(), consent(expires_at=NOW - timedelta(days=1)),
     (TaskStatus.requested, "awaiting-consent", "consent-expired")),
    (case(H), consent(ConsentStatus.refused), (TaskStatus.requested, "escalated", "high-risk-no-consent")),
    (case(H, district="HX1"), consent(ConsentStatus.refused, safeguarding_basis=True),
     (TaskStatus.requested, "escalated", "no-marac")),
    (case(H, district="ZZ9", needs=("bsl",)), consent(), (TaskStatus.requested, "escalated", "no-eligible-service")),
], ids=["refused", "withdrawn", "nothing eligible", "not asked", "expired", "high risk no basis",
        "high risk no MARAC", "high risk nothing eligible"])
def test_each_no_offer_decision_maps_to_its_task_answer(summary: CaseSummary, state: ConsentState,
                                                         expected: tuple[str, str, str]) -> None:
    decision = route(summary, state, INDEX, open_offers={}, now=NOW)
    answer = task_answer(decision, high=summary.risk_band is H)
    assert answer is not None and (answer.status, answer.code, answer.reason_code) == expected
    assert answer.reason.startswith("no offer made")
    # A final refusal does not tell the referrer to update consent: a new referral is the way on.
    if answer.status is TaskStatus.rejected:
        assert "update consent" not in answer.reason


def test_a_decision_with_offers_has_no_no_offer_answer() -> None:
    assert task_answer(route(case(), consent(), INDEX, open_offers={}, now=NOW), high=False) is None
