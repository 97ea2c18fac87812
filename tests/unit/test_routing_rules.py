"""The routing rules, as a table: area × risk × characteristics × consent × preferences × capacity.

Each row is a case a clinician could send, the services it must be offered to (in order), and the
reasons and exclusions an ops lead or a commissioner would read in the explanation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.router.domain import DirectoryIndex, Lane, Outcome, next_in_lane, route
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
from tests.unit.router_directory import BRADFORD, SERVICES, directory_index

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
INDEX = directory_index()
S, M, H = RiskBand.standard, RiskBand.medium, RiskBand.high
ALL = tuple(ConsentScope)
LEEDS = "serves Leeds (E08000035)"


def consent(status: ConsentStatus = ConsentStatus.granted, scopes: tuple[ConsentScope, ...] = ALL,
            **kw: Any) -> ConsentState:
    return ConsentState(status=status, scopes=scopes if status is ConsentStatus.granted else (), **kw)


def case(band: RiskBand = S, district: str | None = "LS7", setting: CareSetting = CareSetting.gp,
         prefs: dict[str, Any] | None = None, **kw: Any) -> CaseSummary:
    return CaseSummary(postcode_district=district, risk_band=band, setting=setting,
                       preferences=RoutingPreferences(**(prefs or {})), **kw)


@dataclass
class Row:
    name: str
    summary: CaseSummary
    offer: list[str]
    consent: ConsentState = field(default_factory=consent)
    open_offers: dict[str, int] = field(default_factory=dict)
    paused: tuple[str, ...] = ()
    lanes: dict[Lane, list[str]] | None = None
    reasons: dict[str, list[str]] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    passed_over: dict[str, str] = field(default_factory=dict)
    escalation: str | None = None
    outcome: Outcome = Outcome.routed
    advice: str | None = None


ROWS = [
    # ---- area and risk --------------------------------------------------------------------------
    Row("standard risk in Leeds goes to the local community service", case(), ["leeds-outreach"],
        lanes={Lane.specialist: ["leeds-outreach", "leeds-outreach-b"]},
        reasons={"leeds-outreach": [LEEDS, "community specialist service", "consent covers specialist-da-service"]},
        excluded={"leeds-idva": "IDVA and MARAC are for high-risk cases", "leeds-closed": "excluded: temporarily closed",
                  "leeds-refuge": "no safe accommodation need", "leeds-isva": "works only with sexual-violence",
                  "leeds-chidva": "for children and young people",
                  "kinara-outreach": "by and for Black and minoritised survivors, which the survivor has not shared"}),
    Row("medium risk goes to community services, not the health IDVA", case(M), ["leeds-outreach"],
        excluded={"northgate-health-idva": "excluded: IDVA and MARAC are for high-risk cases"}),
    Row("high risk at a GP: community IDVA and MARAC in parallel", case(H), ["leeds-idva", "leeds-marac"],
        lanes={Lane.idva: ["leeds-idva", "leeds-idva-b", "northgate-health-idva"], Lane.marac: ["leeds-marac"]},
        reasons={"leeds-idva": [LEEDS, "high risk: IDVA service", "consent covers idva"],
                 "leeds-marac": ["high risk: area MARAC", "consent covers marac"]},
        excluded={"leeds-outreach": "excluded: does not take high risk"}),
    Row("high risk in the emergency department: health IDVA first", case(H, setting=CareSetting.emergency_department),
        ["northgate-health-idva", "leeds-marac"],
        lanes={Lane.idva: ["northgate-health-idva", "leeds-idva", "leeds-idva-b"], Lane.marac: ["leeds-marac"]},
        reasons={"northgate-health-idva": ["health IDVA, first in a hospital setting"]}),
    Row("high risk in maternity: health IDVA first", case(H, setting=CareSetting.maternity),
        ["northgate-health-idva", "leeds-marac"]),
    Row("Bradford standard risk", case(district="BD1"), ["bradford-outreach"],
        reasons={"bradford-outreach": ["serves Bradford (E08000032)"]}),
    Row("Bradford high risk goes to Bradford's IDVA and MARAC", case(H, district="BD1"),
        ["bradford-idva", "bradford-marac"]),
    Row("a district straddling two authorities matches either", case(district="WF10"), ["leeds-outreach"],
        reasons={"leeds-outreach": [LEEDS]}),
    Row("area codes from intake route a case without a district", case(district=None, area_codes=(BRADFORD,)),
        ["bradford-outreach"]),
    Row("lower-case district is normalised", case(district="ls7"), ["leeds-outreach"]),
    Row("a full postcode is reduced to its district", case(district="ls7 3ab"), ["leeds-outreach"],
        reasons={"leeds-outreach": [LEEDS]}),
    Row("nothing local in Calderdale: national helpline and ops", case(district="HX1"), ["national-da-helpline"],
        outcome=Outcome.fallback, escalation="no community specialist service available",
        reasons={"national-da-helpline": ["national service", "fallback: nothing local fits"]}),
    Row("high risk with no local IDVA or MARAC: helpline and ops", case(H, district="HX1"), ["national-da-helpline"],
        outcome=Outcome.fallback, escalation="no IDVA service available; no MARAC available for this area"),
    Row("unknown district: only national services, and ops told", case(district="ZZ9"), ["national-da-helpline"],
        outcome=Outcome.fallback, escalation="postcode district ZZ9 is not in the gazetteer"),
    Row("a BSL need where nothing has BSL, not even a helpline: no offer, and ops told exactly why",
        case(district="ZZ9", needs=("bsl",)), [], outcome=Outcome.no_offer,
        escalation="no community specialist service available; postcode district ZZ9 is not in the gazetteer; "
                   "no national helpline the survivor can use (no BSL provision, which the survivor needs)",
        advice="national-da-helpline (sample)"),
    Row("no district at all: helpline and ops", case(district=None), ["national-da-helpline"],
        outcome=Outcome.fallback, escalation="no community specialist service available"),
    # ---- characteristics and needs -----------------------------------------------------------------
    Row("a shared characteristic puts the local by-and-for service first", case(characteristics=("black-minoritised",)),
        ["kinara-outreach"], lanes={Lane.specialist: ["kinara-outreach", "leeds-outreach", "leeds-outreach-b"]},
        reasons={"kinara-outreach": ["by-and-for Black and minoritised survivors, matches a shared characteristic"]}),
    Row("declining by-and-for services is respected",
        case(characteristics=("black-minoritised",), prefs={"by_and_for": ByAndForPreference.declined}),
        ["leeds-outreach"], excluded={"kinara-outreach": "excluded: the survivor declined by-and-for services"}),
    Row("a BSL need: only services with BSL, the Deaf-led one first", case(needs=("bsl",)), ["wy-deaf-outreach"],
        reasons={"wy-deaf-outreach": ["serves E54000054",
                                      "by-and-for Deaf survivors, matches BSL need", "BSL provision"]},
        excluded={"leeds-outreach": "excluded: no BSL provision, which the survivor needs"}),
    Row("Deaf survivor: the Deaf-led service covering her ICB is local, so it ranks first and is the offer",
        case(characteristics=("deaf",)), ["wy-deaf-outreach"],
        lanes={Lane.specialist: ["wy-deaf-outreach", "leeds-outreach", "leeds-outreach-b"]},
        reasons={"wy-deaf-outreach": ["serves E54000054", "by-and-for Deaf survivors"]}),
    Row("LGBT+ survivor: national by-and-for service beside the best local one", case(characteristics=("lgbt+",)),
        ["leeds-outreach", "national-lgbt-outreach"],
        reasons={"national-lgbt-outreach": ["national service", "by-and-for LGBT+ survivors"]}),
    Row("LGBT+ survivor whose consent excludes by-and-for services", case(characteristics=("lgbt+",)),
        ["leeds-outreach"], consent=consent(scopes=(ConsentScope.specialist_da,)),
        excluded={"national-lgbt-outreach": "excluded: consent does not cover by-and-for-service"}),
    Row("high risk, LGBT+: IDVA, MARAC and a national by-and-for service", case(H, characteristics=("lgbt+",)),
        ["leeds-idva", "leeds-marac", "national-lgbt-outreach"]),
    Row("high risk, Black and minoritised: local by-and-for service beside the IDVA",
        case(H, characteristics=("black-minoritised",)), ["leeds-idva", "leeds-marac", "kinara-outreach"],
        reasons={"kinara-outreach": ["offered beside the IDVA service"]}),
    Row("a male survivor: female-only services excluded",
        case(gender="male", needs=("safe-accommodation",)), ["leeds-outreach"],
        excluded={"leeds-refuge": "excluded: serves female survivors only"}),
    Row("no recourse to public funds: services that do not accept it are excluded",
        case(H, needs=("no-recourse-to-public-funds",)), ["leeds-idva", "leeds-marac"],
        lanes={Lane.idva: ["leeds-idva", "northgate-health-idva"], Lane.marac: ["leeds-marac"]},
        excluded={"leeds-idva-b": "excluded: does not accept survivors with no recourse to public funds"}),
    Row("NRPF in Bradford: nothing local fits", case(district="BD1", needs=("no-recourse-to-public-funds",)),
        ["national-da-helpline"], outcome=Outcome.fallback,
        excluded={"bradford-outreach": "no recourse to public funds"}),
    Row("contact language is hard: services that list other languages are excluded", case(language="pl"),
        ["leeds-outreach"], excluded={"leeds-outreach-b": "excluded: does not work in Polish"}),
    Row("forced marriage: the specialist ranks first", case(abuse_types=("forced-marriage",)), ["leeds-fm"],
        reasons={"leeds-fm": ["specialist in forced marriage"]}),
    Row("sexual violence: the sexual violence service ranks first", case(abuse_types=("sexual-violence",)),
        ["leeds-isva"], reasons={"leeds-isva": ["specialist in sexual violence"]}),
    Row("a safe accommodation need puts the refuge first", case(gender="female", needs=("safe-accommodation",)),
        ["leeds-refuge"], reasons={"leeds-refuge": ["safe accommodation, as needed"]}),
    Row("a 16-17 year old: the children and young people's service first", case(age_band="16-17"),
        ["leeds-chidva"], reasons={"leeds-chidva": ["for children and young people"]}),
    Row("a high-risk 16-17 year old: the children's IDVA and the MARAC", case(H, age_band="16-17"),
        ["leeds-chidva", "leeds-marac"]),
    Row("an older survivor with no older people's service: the generic service", case(age_band="60-plus"),
        ["leeds-outreach"], excluded={"leeds-chidva": "does not serve age band 60-plus"}),
    Row("a non-binary survivor: no female-only services", case(gender="non-binary", needs=("safe-accommodation",)),
        ["leeds-outreach"], excluded={"leeds-refuge": "serves female survivors only"}),
    # ---- the survivor's choices ---------------------------------------------------------------------
    Row("a preferred male worker ranks that service up", case(gender="male", prefs={"worker_gender": "male"}),
        ["leeds-outreach-b"], reasons={"leeds-outreach-b": ["offers a male worker, as preferred"]}),
    Row("a preferred language ranks that service up", case(prefs={"language": "ur"}), ["leeds-outreach-b"],
        reasons={"leeds-outreach-b": ["works in Urdu, as preferred"]}),
    Row("a declined service is never offered", case(prefs={"declined_service_types": ("leeds-outreach",)}),
        ["leeds-outreach-b"], excluded={"leeds-outreach": "declined this service or kind of service"}),
    Row("a declined kind is never offered: nothing left, so helpline and ops",
        case(prefs={"declined_service_types": ("community-outreach",)}), ["national-da-helpline"],
        outcome=Outcome.fallback, escalation="no community specialist service available"),
    Row("a declined IDVA kind at high risk leaves the health IDVA",
        case(H, prefs={"declined_service_types": ("idva",)}), ["northgate-health-idva", "leeds-marac"]),
    # ---- consent -------------------------------------------------------------------------------------
    Row("no consent at high risk: only the MARAC, on the safeguarding basis",
        case(H), ["leeds-marac"], consent=consent(ConsentStatus.refused, safeguarding_basis=True),
        lanes={Lane.marac: ["leeds-marac"]},
        reasons={"leeds-marac": ["recorded high-risk safeguarding basis (MARAC)"]},
        excluded={"leeds-idva": "excluded: consent refused"}),
    Row("no consent and no safeguarding basis at high risk: no offer, ops told", case(H), [],
        consent=consent(ConsentStatus.refused), outcome=Outcome.no_offer,
        escalation="high risk, consent refused and no recorded safeguarding basis",
        advice="national-da-helpline (sample)"),
    Row("safeguarding basis but no MARAC for the area: no offer, ops told", case(H, district="HX1"), [],
        consent=consent(ConsentStatus.refused, safeguarding_basis=True), outcome=Outcome.no_offer,
        escalation="no MARAC available for this area"),
    Row("consent not asked at standard risk: no offer, helpline as advice", case(), [],
        consent=consent(ConsentStatus.not_asked), outcome=Outcome.no_offer, advice="national-da-helpline (sample)"),
    Row("consent withdrawn at medium risk: no offer", case(M), [], consent=consent(ConsentStatus.withdrawn),
        outcome=Outcome.no_offer),
    Row("expired consent counts as no consent", case(), [], consent=consent(expires_at=NOW - timedelta(days=1)),
        outcome=Outcome.no_offer),
    Row("consent naming one organisation only", case(), ["leeds-outreach-b"],
        consent=consent(scopes=(), organisations=("org-leeds-outreach-b",)),
        reasons={"leeds-outreach-b": ["consent names this organisation"]}),
    Row("high risk without IDVA consent: MARAC, helpline and ops", case(H), ["leeds-marac", "national-da-helpline"],
        consent=consent(scopes=(ConsentScope.marac, ConsentScope.specialist_da)),
        escalation="no IDVA service available"),
    Row("consent for by-and-for services only and nothing matches: no offer, ops told", case(), [],
        consent=consent(scopes=(ConsentScope.by_and_for,)), outcome=Outcome.no_offer,
        escalation="no community specialist service available; no national helpline the survivor can use "
                   "(consent does not cover specialist-da-service)",
        advice="national-da-helpline (sample)"),
    # ---- capacity ------------------------------------------------------------------------------------
    Row("a service at its maximum open offers is passed over", case(), ["leeds-outreach-b"],
        open_offers={"leeds-outreach": 2},
        passed_over={"leeds-outreach": "passed over: at capacity (2 of 2 open offers)"}),
    Row("below its maximum a service is still offered", case(), ["leeds-outreach"], open_offers={"leeds-outreach": 1}),
    Row("a paused service is passed over", case(), ["leeds-outreach-b"], paused=("leeds-outreach",),
        passed_over={"leeds-outreach": "passed over: not accepting referrals (paused)"}),
    Row("the IDVA at capacity: the next IDVA", case(H), ["leeds-idva-b", "leeds-marac"], open_offers={"leeds-idva": 1}),
    Row("every local service paused or full: helpline and ops", case(district="BD1"), ["national-da-helpline"],
        paused=("bradford-outreach",), outcome=Outcome.fallback),
    Row("every IDVA paused: MARAC, the by-and-for service, the helpline, and ops told",
        case(H, characteristics=("black-minoritised",)), ["leeds-marac", "kinara-outreach", "national-da-helpline"],
        paused=("leeds-idva", "leeds-idva-b", "northgate-health-idva"), escalation="no IDVA service available"),
    Row("a male survivor without consent: the men's helpline as advice", case(gender="male"), [],
        consent=consent(ConsentStatus.refused), outcome=Outcome.no_offer, advice="national-mens-helpline (sample)"),
    Row("a male survivor with nothing local: the men's helpline", case(district="HX1", gender="male"),
        ["national-mens-helpline"], outcome=Outcome.fallback,
        reasons={"national-mens-helpline": ["by-and-for male survivors, matches gender"]}),
]


def index_for(row: Row) -> DirectoryIndex:
    if not row.paused:
        return INDEX
    services = tuple(s.model_copy(update={"accepting": False}) if s.id in row.paused else s for s in SERVICES)
    return directory_index(services)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_routing_table(row: Row) -> None:
    decision = route(row.summary, row.consent, index_for(row), open_offers=row.open_offers, now=NOW)
    assert [s.service_id for s in decision.offer_to] == row.offer
    assert decision.outcome is row.outcome
    if row.lanes is not None:
        assert {lane: [s.service_id for s in ss] for lane, ss in decision.lanes.items()} == row.lanes
    offered = {s.service_id: s for s in decision.offer_to}
    for service_id, expected in row.reasons.items():
        text = " | ".join(offered[service_id].reasons)
        for reason in expected:
            assert reason in text
    for service_id, reason in row.excluded.items():
        assert reason in decision.excluded[service_id]
    for service_id, reason in row.passed_over.items():
        assert decision.passed_over[service_id] == reason
    if row.escalation is None and row.outcome is Outcome.routed:
        assert decision.escalation is None
    elif row.escalation is not None:
        assert decision.escalation is not None and row.escalation in decision.escalation
    if row.outcome is Outcome.no_offer:
        assert decision.no_offer_reason and decision.offer_to == []
    if row.advice is not None:
        assert decision.advice == row.advice
    # Every candidate the router looked at is accounted for: offered, ranked, excluded or passed over.
    assert not set(decision.ranking()) & (set(decision.excluded) | set(decision.passed_over))


def test_no_consent_at_lower_risk_is_not_an_escalation_but_the_task_says_why() -> None:
    decision = route(case(), consent(ConsentStatus.not_asked), INDEX, open_offers={}, now=NOW)
    assert decision.escalation is None
    assert decision.no_offer_reason == (
        "no offer made: consent not-asked for a standard-risk referral; ask the survivor and update consent to route it"
    )


@pytest.mark.parametrize("row", ROWS[:12], ids=[r.name for r in ROWS[:12]])
def test_ranking_does_not_depend_on_the_order_of_the_directory(row: Row) -> None:
    backwards = directory_index(tuple(reversed(SERVICES)))
    forwards = route(row.summary, row.consent, INDEX, open_offers=row.open_offers, now=NOW)
    assert route(row.summary, row.consent, backwards, open_offers=row.open_offers, now=NOW) == forwards


def test_explanation_names_area_risk_and_characteristics() -> None:
    decision = route(case(H, characteristics=("lgbt+",)), consent(), INDEX, open_offers={}, now=NOW)
    assert decision.notes == [
        "area: Leeds (E08000035), E54000054, LS7, England (E92000001)",
        "high risk: an IDVA service and the area's MARAC, in parallel",
        "survivor shared: LGBT+; matching by-and-for services rank first",
        "specialist national helplines named as advice: national-lgbt-helpline (sample)",
    ]
    assert decision.rule_version and decision.directory_version == "test-1"


def test_perpetrator_programmes_are_never_candidates() -> None:
    decision = route(case(), consent(), INDEX, open_offers={}, now=NOW)
    assert "leeds-perpetrator" not in decision.ranking() and "leeds-perpetrator" not in decision.excluded


def test_sla_is_the_shorter_of_the_service_and_the_area_protocol() -> None:
    services = tuple(s.model_copy(update={"response_sla_hours": {"high": 2.0}}) if s.id == "leeds-idva" else s
                     for s in SERVICES)
    decision = route(case(H), consent(), directory_index(services), open_offers={}, now=NOW,
                     sla_hours={"high": 4.0})
    assert [s.respond_within_hours for s in decision.offer_to] == [2.0, 4.0]


def test_next_in_lane_skips_offered_paused_full_and_removed_services() -> None:
    decision = route(case(H), consent(), INDEX, open_offers={}, now=NOW)
    lane = decision.lanes[Lane.idva]
    services = tuple(s.model_copy(update={"accepting": False}) if s.id == "leeds-idva-b" else s for s in SERVICES)
    now_paused = directory_index(services)
    nxt, passed = next_in_lane(lane, offered=["leeds-idva"], index=now_paused, open_offers={})
    assert nxt is not None and nxt.service_id == "northgate-health-idva"
    assert passed == {"leeds-idva-b": "passed over: not accepting referrals (paused)"}
    exhausted, _ = next_in_lane(lane, offered=[s.service_id for s in lane], index=INDEX, open_offers={})
    assert exhausted is None
    # Without a directory copy the stored ranking is still followed.
    nxt, passed = next_in_lane(lane, offered=["leeds-idva"], index=None, open_offers={})
    assert nxt is not None and nxt.service_id == "leeds-idva-b" and passed == {}


def test_next_in_lane_passes_over_a_service_the_current_consent_no_longer_covers() -> None:
    decision = route(case(H), consent(), INDEX, open_offers={}, now=NOW)
    lane = decision.lanes[Lane.idva]
    # The survivor has since named one organisation only: the ranking made on the broader consent is
    # followed only as far as the consent now reaches.
    narrowed = ConsentState(status=ConsentStatus.granted, organisations=("org-northgate-health-idva",), version=2)
    nxt, passed = next_in_lane(lane, offered=["leeds-idva"], index=INDEX, open_offers={}, consent=narrowed, now=NOW)
    assert nxt is not None and nxt.service_id == "northgate-health-idva"
    assert passed == {"leeds-idva-b": "passed over: consent does not cover idva"}
