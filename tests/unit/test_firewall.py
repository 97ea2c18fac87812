"""The immigration firewall as a rule: a statutory body's view of a case never carries immigration status."""

from __future__ import annotations

from shared.events import CareSetting, CaseSummary, RiskBand
from shared.firewall import reasons_for, summary_for

SUMMARY = CaseSummary(postcode_district="LS7", postcode_sector="LS7 9", risk_band=RiskBand.high,
                      setting=CareSetting.gp, needs=("children-in-household", "no-recourse-to-public-funds"))


def test_a_marac_sees_every_need_but_immigration_status() -> None:
    assert summary_for(SUMMARY, "marac").needs == ("children-in-household",)
    assert reasons_for(["serves Leeds (E08000035)", "accepts survivors with no recourse to public funds"],
                       "marac") == ["serves Leeds (E08000035)"]


def test_a_specialist_service_may_match_on_it() -> None:
    assert summary_for(SUMMARY, "idva") is SUMMARY
    assert summary_for(SUMMARY, "refuge").needs == SUMMARY.needs
    assert reasons_for(("accepts survivors with no recourse to public funds",), "refuge") == [
        "accepts survivors with no recourse to public funds"]
