"""Issue 12's routing rules: local means what the coverage says, a by-and-for service covering the area
ranks first when the survivor asks for one, specialist national helplines are visible, and the referrer's
summary of the decision says what was offered without another organisation's internal details.

Every organisation here is invented; the gazetteer is a synthetic two-authority one with a region.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.router.domain import DirectoryIndex, Lane, Outcome, route
from shared.directory_contract import DirectorySnapshot, ServiceRecord
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
from shared.geography import Gazetteer

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
LEEDS, WAKEFIELD, WY_ICB, YH_REGION = "E08000035", "E08000036", "E54000054", "E12000003"
GRANTED = ConsentState(status=ConsentStatus.granted, scopes=tuple(ConsentScope))


def service(id: str, service_type: str = "community-outreach", coverage: tuple[str, ...] = (LEEDS,),
            **kw: Any) -> ServiceRecord:
    return ServiceRecord(id=id, organisation_id=f"org-{id}", organisation_name=f"{id} org", name=f"{id} (sample)",
                         service_type=service_type, coverage=coverage, **kw)


def helpline(id: str, **kw: Any) -> ServiceRecord:
    return service(id, "national-helpline", ("national",), coverage_level="national", **kw)


HELPLINES = (
    helpline("da-helpline"),
    # As the sample's helpline for older people: by and for them, and focused on elder abuse.
    helpline("older-helpline", by_and_for=("older-people",), abuse_types=("elder-abuse",)),
    helpline("fm-hba-helpline", abuse_types=("forced-marriage", "honour-based-abuse")),
    helpline("lgbt-helpline", by_and_for=("lgbt+",)),
    helpline("deaf-helpline", by_and_for=("deaf",), bsl=True),
    helpline("mens-helpline", by_and_for=("men",)),
)
GAZETTEER = Gazetteer(
    source="test", version="test-gazetteer-2",
    names={LEEDS: "Leeds", WAKEFIELD: "Wakefield", YH_REGION: "Yorkshire and The Humber"},
    authorities={LEEDS: (LEEDS, YH_REGION, WY_ICB), WAKEFIELD: (WAKEFIELD, YH_REGION, WY_ICB)},
    districts={"LS7": (((LEEDS, 1.0),), ((WY_ICB, 1.0),)),
               "WF10": (((WAKEFIELD, 0.6), (LEEDS, 0.4)), ((WY_ICB, 1.0),))},
)


def index(*services: ServiceRecord) -> DirectoryIndex:
    snapshot = DirectorySnapshot(version="t", generated_at=NOW, services=(*services, *HELPLINES))
    return DirectoryIndex.from_snapshot(snapshot, GAZETTEER)


def case(district: str = "LS7", band: RiskBand = RiskBand.standard, by_and_for: str = "no-preference",
         **kw: Any) -> CaseSummary:
    return CaseSummary(postcode_district=district, risk_band=band, setting=CareSetting.gp,
                       preferences=RoutingPreferences(by_and_for=ByAndForPreference(by_and_for)), **kw)


def reasons(decision: Any, service_id: str) -> str:
    return " | ".join(next(s for ss in decision.lanes.values() for s in ss if s.service_id == service_id).reasons)


# ---- local means what the coverage says ------------------------------------------------------------


def test_the_tier_comes_from_the_coverage_that_matched_not_from_the_label() -> None:
    directory = index(
        # Labelled inconsistently by hand: the coverage decides.
        service("leeds-outreach", coverage_level="regional"),
        service("wy-icb-outreach", coverage=(WY_ICB,), coverage_level="regional"),
        service("yh-region-outreach", coverage=(YH_REGION,), coverage_level="local"),
    )
    decision = route(case(), GRANTED, directory, open_offers={}, now=NOW)
    # Local first (the authority's own service before the ICB-wide one), the region's after them.
    assert [s.service_id for s in decision.lanes[Lane.specialist]] == [
        "leeds-outreach", "wy-icb-outreach", "yh-region-outreach"]
    assert "serves Leeds (E08000035)" in reasons(decision, "leeds-outreach")
    assert "serves E54000054" in reasons(decision, "wy-icb-outreach")
    assert "regional service covering Yorkshire and The Humber (E12000003)" in reasons(decision, "yh-region-outreach")


def test_a_by_and_for_service_covering_the_icb_is_local_and_offered_alone() -> None:
    directory = index(service("leeds-outreach"),
                      service("wy-deaf-outreach", coverage=(WY_ICB,), coverage_level="regional", by_and_for=("deaf",)))
    decision = route(case(characteristics=("deaf",)), GRANTED, directory, open_offers={}, now=NOW)
    assert [s.service_id for s in decision.offer_to] == ["wy-deaf-outreach"]
    assert "no matching by-and-for service is local" not in reasons(decision, "wy-deaf-outreach")


def test_a_regional_by_and_for_service_is_offered_beside_the_best_local_one() -> None:
    directory = index(service("leeds-outreach"),
                      service("yh-bme-outreach", coverage=(YH_REGION,), by_and_for=("black-minoritised",)))
    decision = route(case(characteristics=("black-minoritised",), by_and_for="wanted"), GRANTED, directory,
                     open_offers={}, now=NOW)
    assert [s.service_id for s in decision.offer_to] == ["leeds-outreach", "yh-bme-outreach"]
    assert "no matching by-and-for service is local" in reasons(decision, "yh-bme-outreach")


# ---- by-and-for first when she asks for it ---------------------------------------------------------


@pytest.mark.parametrize(("preference", "offered"), [
    # She asked: the by-and-for service covering her area (another authority of her split sector) is first.
    ("wanted", ["leeds-bme-outreach"]),
    # No preference stated: the main authority's service first, the by-and-for one beside it.
    ("no-preference", ["wakefield-outreach", "leeds-bme-outreach"]),
    # Declined: never offered.
    ("declined", ["wakefield-outreach"]),
])
def test_a_matching_by_and_for_service_covering_the_area_ranks_first_when_she_wants_one(
        preference: str, offered: list[str]) -> None:
    directory = index(service("wakefield-outreach", coverage=(WAKEFIELD,)),
                      service("leeds-bme-outreach", by_and_for=("black-minoritised",)))
    decision = route(case("WF10", characteristics=("black-minoritised",), by_and_for=preference), GRANTED,
                     directory, open_offers={}, now=NOW)
    assert [s.service_id for s in decision.offer_to] == offered


def test_by_and_for_first_holds_for_the_high_risk_idva_lane_too() -> None:
    directory = index(service("leeds-idva", "idva"), service("leeds-marac", "marac"),
                      service("leeds-lgbt-idva", "idva", coverage=(WY_ICB,), by_and_for=("lgbt+",)))
    decision = route(case(band=RiskBand.high, characteristics=("lgbt+",), by_and_for="wanted"), GRANTED,
                     directory, open_offers={}, now=NOW)
    assert [s.service_id for s in decision.offer_to] == ["leeds-lgbt-idva", "leeds-marac"]


# ---- helplines are visible -------------------------------------------------------------------------


@pytest.mark.parametrize(("shared", "expected"), [
    ({"age_band": "60-plus"}, "older-helpline"),
    ({"abuse_types": ("forced-marriage",)}, "fm-hba-helpline"),
    ({"abuse_types": ("honour-based-abuse",)}, "fm-hba-helpline"),
    ({"characteristics": ("lgbt+",)}, "lgbt-helpline"),
    ({"characteristics": ("deaf",)}, "deaf-helpline"),
    ({"gender": "male"}, "mens-helpline"),
])
def test_an_eligible_specialist_helpline_is_named_beside_the_local_offer(shared: dict[str, Any],
                                                                         expected: str) -> None:
    decision = route(case(**shared), GRANTED, index(service("leeds-outreach")), open_offers={}, now=NOW)
    assert [s.service_id for s in decision.offer_to] == ["leeds-outreach"]
    assert [h.service_id for h in decision.helplines] == [expected]
    assert "specialist national helpline: advice beside the offers" in decision.helplines[0].reasons
    assert any(expected in note for note in decision.notes)
    assert f"Helplines to mention: {expected} (sample)." in decision.referrer_summary


def test_no_specialist_helpline_is_named_for_a_case_it_does_not_serve_or_that_declined_it() -> None:
    directory = index(service("leeds-outreach"))
    plain = route(case(), GRANTED, directory, open_offers={}, now=NOW)
    assert plain.helplines == []  # the generic helpline is no specialist
    assert "Helplines" not in plain.referrer_summary
    declined = route(case(characteristics=("lgbt+",), by_and_for="declined"), GRANTED, directory,
                     open_offers={}, now=NOW)
    assert declined.helplines == []


def test_with_nothing_local_the_matching_specialist_helpline_is_the_offer() -> None:
    decision = route(case("ZZ9", gender="male"), GRANTED, index(service("leeds-outreach")), open_offers={}, now=NOW)
    assert decision.outcome is Outcome.fallback
    assert [s.service_id for s in decision.offer_to] == ["mens-helpline"]
    assert decision.helplines == []  # offered already: not named twice


# ---- the referrer sees why --------------------------------------------------------------------------


def test_the_referrer_summary_says_what_was_offered_and_names_no_other_organisations_internals() -> None:
    directory = index(
        service("leeds-idva", "idva", max_open_offers=1),
        service("leeds-idva-b", "idva", accepting=False),
        service("leeds-marac", "marac"),
        service("leeds-bme-outreach", by_and_for=("black-minoritised",)),
        service("leeds-refuge", "refuge", genders=("female",)),
    )
    summary = case(band=RiskBand.high, characteristics=("black-minoritised",), gender="male")
    decision = route(summary, GRANTED, directory, open_offers={"leeds-idva": 1}, now=NOW)
    text = decision.referrer_summary
    # No IDVA service could take the case: the MARAC, the by-and-for service and the men's helpline.
    assert text.startswith("Offered to the area's MARAC, a by-and-for service and a specialist national helpline; "
                           "high risk.")
    assert "A by-and-for service matching what the survivor shared was chosen." in text
    assert "Pathways operations have been told and will follow up." in text  # no IDVA available
    # Who was passed over or excluded, and why (capacity, a pause, eligibility), stays with ops.
    for service_id in (*decision.excluded, *decision.passed_over):
        assert service_id not in text
    for internal in ("capacity", "paused", "open offers", "excluded", "female"):
        assert internal not in text


def test_the_referrer_summary_says_when_no_by_and_for_service_was_available() -> None:
    decision = route(case(characteristics=("gypsy-roma-traveller",)), GRANTED, index(service("leeds-outreach")),
                     open_offers={}, now=NOW)
    assert decision.referrer_summary == (
        "Offered to a community specialist service; standard risk. "
        "No by-and-for service matching what the survivor shared was available.")
