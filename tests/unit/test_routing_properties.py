"""Properties every routing decision keeps, whatever the case: checked over generated cases."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.domain import Outcome, route, task_answer
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
from shared.reference import AbuseType, AgeBand, Community, Need
from tests.unit.router_directory import SERVICES, directory_index

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
INDEX = directory_index()
RECORDS = {s.id: s for s in SERVICES}

summaries = st.builds(
    CaseSummary,
    postcode_district=st.sampled_from(["LS7", "BD1", "HX1", "WF10", "ZZ9", None]),
    risk_band=st.sampled_from(list(RiskBand)),
    setting=st.sampled_from(list(CareSetting)),
    needs=st.lists(st.sampled_from(list(Need)), max_size=3, unique=True).map(tuple),
    characteristics=st.lists(st.sampled_from(list(Community)), max_size=2, unique=True).map(tuple),
    abuse_types=st.lists(st.sampled_from(list(AbuseType)), max_size=2, unique=True).map(tuple),
    gender=st.sampled_from(["female", "male", "non-binary", None]),
    age_band=st.sampled_from([*AgeBand, None]),
    language=st.sampled_from([None, "ur", "pl"]),
    preferences=st.builds(
        RoutingPreferences,
        by_and_for=st.sampled_from(list(ByAndForPreference)),
        worker_gender=st.sampled_from([None, "female", "male"]),
        language=st.sampled_from([None, "ur"]),
        declined_service_types=st.lists(st.sampled_from(["community-outreach", "idva", "leeds-outreach", "refuge"]),
                                        max_size=2, unique=True).map(tuple),
    ),
)
consents = st.builds(
    ConsentState,
    status=st.sampled_from(list(ConsentStatus)),
    scopes=st.lists(st.sampled_from(list(ConsentScope)), unique=True).map(tuple),
    expires_at=st.sampled_from([None, NOW - timedelta(days=1), NOW + timedelta(days=30)]),
    safeguarding_basis=st.booleans(),
)
# The consent scope each service in the test directory needs, written by hand from the consent rules
# (DESIGN.md, "Consent"): IDVA services (health IDVAs too) need "idva", the MARAC "marac", by-and-for
# services "by-and-for-service", every other specialist service "specialist-da-service". Not computed by
# shared.consent: it is the independent expectation the router is checked against.
SCOPE_NEEDED: dict[str, ConsentScope] = {
    "leeds-outreach": ConsentScope.specialist_da,
    "leeds-outreach-b": ConsentScope.specialist_da,
    "kinara-outreach": ConsentScope.by_and_for,
    "leeds-idva": ConsentScope.idva,
    "leeds-idva-b": ConsentScope.idva,
    "northgate-health-idva": ConsentScope.idva,
    "leeds-marac": ConsentScope.marac,
    "leeds-refuge": ConsentScope.specialist_da,
    "leeds-isva": ConsentScope.specialist_da,
    "leeds-chidva": ConsentScope.specialist_da,
    "leeds-fm": ConsentScope.specialist_da,
    "leeds-perpetrator": ConsentScope.specialist_da,
    "leeds-closed": ConsentScope.specialist_da,
    "wy-deaf-outreach": ConsentScope.by_and_for,
    "bradford-outreach": ConsentScope.specialist_da,
    "bradford-idva": ConsentScope.idva,
    "bradford-marac": ConsentScope.marac,
    "national-da-helpline": ConsentScope.specialist_da,
    "national-mens-helpline": ConsentScope.by_and_for,
    "national-lgbt-helpline": ConsentScope.by_and_for,
    "national-lgbt-outreach": ConsentScope.by_and_for,
}
MARACS = {"leeds-marac", "bradford-marac"}


def consent_allows(consent: ConsentState, service_id: str) -> bool:
    """The rule in words: a MARAC may receive a case on a recorded safeguarding basis; anyone else only
    with consent that is granted, unexpired and includes the scope the table says the service needs."""
    if service_id in MARACS and consent.safeguarding_basis:
        return True
    live = consent.status is ConsentStatus.granted and (consent.expires_at is None or consent.expires_at > NOW)
    return live and SCOPE_NEEDED[service_id] in consent.scopes


def test_the_scope_table_covers_the_whole_test_directory():
    assert set(SCOPE_NEEDED) == set(RECORDS)


loads = st.dictionaries(st.sampled_from(sorted(RECORDS)), st.integers(0, 3), max_size=4)


@settings(max_examples=300, deadline=None)
@given(summary=summaries, consent=consents, open_offers=loads, seed=st.integers(0, 2**16))
def test_every_decision_is_safe_explained_and_stable(summary, consent, open_offers, seed):
    decision = route(summary, consent, INDEX, open_offers=open_offers, now=NOW)

    # The same case and directory, listed in another order, give the same decision.
    shuffled = list(SERVICES)
    random.Random(seed).shuffle(shuffled)
    assert route(summary, consent, directory_index(tuple(shuffled)),
                 open_offers=open_offers, now=NOW) == decision

    declined = set(summary.preferences.declined_service_types)
    for offered in decision.offer_to:
        record = RECORDS[offered.service_id]
        # Nobody outside the consent, nothing the survivor declined, nobody paused or full.
        assert consent_allows(consent, record.id), f"{record.id} offered outside the consent"
        assert not declined & {record.id, record.service_type}
        assert record.accepting and (record.max_open_offers is None
                                     or open_offers.get(record.id, 0) < record.max_open_offers)
        assert offered.reasons and all(offered.reasons)
    # ...and nobody inside the consent is turned away for consent.
    for service_id, why in decision.excluded.items():
        if why.startswith("excluded: consent"):
            assert not consent_allows(consent, service_id), f"{service_id}: {why}"
    # Every service ranked is eligible; none is both ranked and excluded.
    assert not set(decision.ranking()) & (set(decision.excluded) | set(decision.passed_over))
    assert len({s.service_id for s in decision.offer_to}) == len(decision.offer_to)

    # Never dropped: no offer always says why, and ops hears unless the survivor's consent is the reason.
    if decision.outcome is Outcome.no_offer:
        assert decision.offer_to == [] and decision.no_offer_reason
        lower_risk_without_consent = summary.risk_band is not RiskBand.high and not (
            consent.status is ConsentStatus.granted and (consent.expires_at is None or consent.expires_at > NOW))
        assert decision.escalation or lower_risk_without_consent
    else:
        assert decision.offer_to

    # The referrer's summary (issue 12) names no other organisation's internals: nobody excluded or passed
    # over, no capacity or pause, nothing of the ranking it was not offered.
    offered_ids = {s.service_id for s in decision.offer_to}
    text = decision.referrer_summary
    assert text
    for service_id in (*decision.excluded, *decision.passed_over, *decision.ranking()):
        if service_id not in offered_ids:
            assert service_id not in text and RECORDS[service_id].name not in text or (
                RECORDS[service_id].service_type == "national-helpline"), f"{service_id} in {text!r}"
    for internal in ("capacity", "paused", "open offers", "excluded", "passed over"):
        assert internal not in text
    # Every no-offer decision gives the referrer's Task an answer; a final one only where none will come.
    answer = task_answer(decision, high=summary.risk_band is RiskBand.high)
    assert (answer is None) == bool(decision.offer_to)
    if answer is not None and answer.status == "rejected":
        assert summary.risk_band is not RiskBand.high
        assert not decision.escalation or answer.reason_code == "no-eligible-service"
