"""The report figures: the gap analysis from the router's rules and directory copy, and notify's tables
built from non-identifying facts (every count through small-number suppression)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.notify.reports.figures import CaseFacts, GapFacts, OfferFacts, build_tables
from services.router.gaps import Availability, area_coverage, availability, geography_report
from shared.events import (
    AreaShare,
    AreaStatus,
    ByAndForPreference,
    CareSetting,
    CaseArea,
    CaseSummary,
    RiskBand,
    RoutingPreferences,
)
from tests.unit.router_directory import BRADFORD, CALDERDALE, LEEDS, WY_ICB, directory_index


def summary(district: str, *characteristics: str, band: RiskBand = RiskBand.medium,
            preference: ByAndForPreference = ByAndForPreference.no_preference, lad: str = LEEDS) -> CaseSummary:
    return CaseSummary(postcode_district=district, risk_band=band, setting=CareSetting.gp,
                       characteristics=characteristics, preferences=RoutingPreferences(by_and_for=preference),
                       area=CaseArea(status=AreaStatus.england, district=district, precision="district",
                                     lads=(AreaShare(code=lad, share=1.0),), icbs=(AreaShare(code=WY_ICB, share=1.0),)))


def test_by_and_for_availability_uses_the_routing_tiers() -> None:
    index = directory_index()
    # Leeds has a Black and minoritised led service of its own; the Deaf-led one covers the whole ICB, so
    # it is local in Bradford (rule 1: the tier comes from the coverage, whatever the service's label).
    assert availability(summary("LS7"), "black-minoritised", index) is Availability.local
    assert availability(summary("BD1"), "deaf", index) is Availability.local
    assert availability(summary("HX1"), "lgbt+", index) is Availability.national
    assert availability(summary("HX1"), "gypsy-roma-traveller", index) is Availability.none


def test_gap_counts_count_survivors_who_did_not_decline_by_and_for_services() -> None:
    index = directory_index()
    report = geography_report([
        summary("LS7", "black-minoritised"), summary("LS7", "black-minoritised"),
        summary("HX1", "gypsy-roma-traveller"),
        summary("HX1", "gypsy-roma-traveller", preference=ByAndForPreference.declined),
    ], index)
    counts = {(g.icb, g.community, g.availability): g.survivors for g in report.gaps}
    assert counts == {(WY_ICB, "black-minoritised", Availability.local): 2,
                      (WY_ICB, "gypsy-roma-traveller", Availability.none): 1}
    assert report.names[LEEDS] == "Leeds"


def test_areas_without_an_idva_service_or_a_marac() -> None:
    coverage = {a.lad: (a.idva, a.marac) for a in area_coverage(directory_index())}
    assert coverage[LEEDS] == (True, True)
    assert coverage[BRADFORD] == (True, True)
    assert coverage[CALDERDALE] == (False, False)


def _case(when: datetime, *characteristics: str, band: RiskBand = RiskBand.medium, lad: str = LEEDS) -> CaseFacts:
    return CaseFacts(case_id=uuid4(), summary=summary("LS7", *characteristics, band=band, lad=lad), referred_at=when)


def test_tables_suppress_small_counts_everywhere_and_time_medians_need_five_cases() -> None:
    start = datetime(2026, 11, 2, 9, tzinfo=UTC)
    cases = [_case(start, band=RiskBand.medium) for _ in range(12)] + [_case(start, "deaf", band=RiskBand.high)
                                                                       for _ in range(2)]
    offers = [OfferFacts(case_id=c.case_id, service_type="community-outreach", by_and_for=False, status="accepted",
                         status_reason=None, outcome="contact-made", assigned_by_ops=False,
                         accepted_at=start + timedelta(hours=h), first_contact_at=start + timedelta(hours=2 * h))
              for h, c in enumerate(cases[:6], start=1)]
    geography = GapFacts(names={WY_ICB: "West Yorkshire ICB", LEEDS: "Leeds"},
                         gaps=[{"icb": WY_ICB, "community": "deaf", "availability": "regional", "survivors": 2}],
                         areas=[{"lad": CALDERDALE, "icb": WY_ICB, "idva": False, "marac": True}])
    tables = {t.key: t for t in build_tables(cases, offers, geography)}
    by_icb = dict(tables["referrals-by-icb"].rows)
    assert by_icb["West Yorkshire ICB"][0] == "<5"  # two high-risk referrals
    assert "2" not in tables["referrals-by-icb"].csv().replace("2026", "")
    assert dict(tables["referrals-by-characteristic"].rows)["Deaf"] == ("<5",)
    assert dict(tables["gaps"].rows)["West Yorkshire ICB: Deaf"][1] == "<5"
    assert dict(tables["timings"].rows)["to acceptance"] == ("6", "3.5", "5.5")
    assert dict(tables["areas-without-idva-or-marac"].rows)[CALDERDALE] == ("West Yorkshire ICB", "none listed", "listed")
    for table in tables.values():
        for _, cells in table.rows:
            assert not any(cell in {"1", "2", "3", "4"} for cell in cells), table.key


def test_a_chart_never_draws_a_hidden_count_as_a_bar() -> None:
    from services.notify.reports.charts import bar_chart
    from services.notify.reports.suppression import CountTable, suppress

    table = suppress(CountTable.of("t", "Referrals by ICB", "ICB", ["referrals"],
                                   [("North", [3]), ("South", [40]), ("East", [12])]))
    chart = bar_chart(table, "referrals", title="Referrals by ICB")
    assert chart is not None and "Total" not in [b.label for b in chart.bars]
    bars = {b.label: b for b in chart.bars}
    assert bars["North"].text == "<5" and bars["North"].length == 0
    assert bars["East"].text == "*" and bars["East"].length == 0  # hidden so that North cannot be worked out
    assert bars["South"].length > 0 and "<5 means a count from 1 to 4" in chart.description


def test_the_trend_has_every_month_including_those_without_referrals() -> None:
    cases = [_case(datetime(2026, 1, 5, tzinfo=UTC)) for _ in range(6)] + \
            [_case(datetime(2026, 4, 5, tzinfo=UTC)) for _ in range(7)]
    months = dict(next(t for t in build_tables(cases, [], None) if t.key == "referrals-by-month").rows)
    assert months == {"2026-01": ("6",), "2026-02": ("0",), "2026-03": ("0",), "2026-04": ("7",), "Total": ("13",)}
