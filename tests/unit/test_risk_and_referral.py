"""The derivations intake makes from a referral Bundle."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from services.intake.domain import RiskThresholds, parse_bundle, parse_referral, risk_band
from shared.events import ConsentScope, ConsentStatus, ReferralReceived, RiskBand
from shared.fhir import FhirError
from tests.conftest import EXAMPLES


@pytest.mark.parametrize(
    ("yes", "judgement", "escalation", "expected"),
    [
        (0, None, False, RiskBand.standard),
        (9, None, False, RiskBand.standard),
        (10, None, False, RiskBand.medium),
        (13, None, False, RiskBand.medium),
        (14, None, False, RiskBand.high),
        (24, None, False, RiskBand.high),
        (3, None, True, RiskBand.high),
        (3, RiskBand.high, False, RiskBand.high),
        (3, RiskBand.medium, False, RiskBand.medium),
        # Professional judgement raises the band; it never lowers it.
        (16, RiskBand.standard, False, RiskBand.high),
        (11, RiskBand.standard, False, RiskBand.medium),
    ],
)
def test_risk_band_follows_dash_and_never_lowers(yes, judgement, escalation, expected):
    assert risk_band(yes, professional_judgement=judgement, potential_escalation=escalation) is expected


def test_risk_thresholds_are_configurable_per_area():
    assert risk_band(12, thresholds=RiskThresholds(high=12, medium=8)) is RiskBand.high
    assert risk_band(8, thresholds=RiskThresholds(high=12, medium=8)) is RiskBand.medium


def example() -> dict:
    return json.loads((EXAMPLES / "gp-referral.json").read_text())


def parse(body: dict):
    return parse_referral(parse_bundle(body), now=datetime(2026, 11, 22, tzinfo=UTC))


def test_example_referral_gives_routing_attributes_without_identifying_data():
    parsed = parse(example())
    assert parsed.summary.postcode_district == "LS7"
    # The sector, the most precise area that does not identify; never the full postcode.
    assert parsed.summary.postcode_sector == "LS7 9" and "9ZZ" not in parsed.summary.model_dump_json()
    assert parsed.summary.risk_band is RiskBand.standard
    assert parsed.referrer_ods == "Y00001"
    assert parsed.consent.status is ConsentStatus.granted
    assert set(parsed.consent.scopes) == {ConsentScope.specialist_da, ConsentScope.by_and_for}
    assert parsed.identifying["birth_date"] == "1990-04-01"

    from uuid import uuid4

    event_json = ReferralReceived(
        case_id=uuid4(), referrer_ods=parsed.referrer_ods, summary=parsed.summary, consent=parsed.consent
    ).model_dump_json()
    for identifying in ("Example", "Alex", "1990-04-01", "LS7 9ZZ", "9ZZ", "07700", "Synthetic Street", "voicemail"):
        assert identifying not in event_json


def test_every_problem_is_reported_with_its_location():
    body = example()
    body["entry"] = [e for e in body["entry"] if e["resource"]["resourceType"] != "RiskAssessment"]
    patient = next(e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["address"][0]["postalCode"] = "NOT A POSTCODE"
    request = next(e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    del request["requester"]
    with pytest.raises(FhirError) as raised:
        parse(body)
    assert raised.value.status == 422
    expressions = {i.expression for i in raised.value.issues}
    assert "Bundle.entry[0].resource.requester.identifier" in expressions
    assert "Bundle.entry[1].resource.address.postalCode" in expressions
    assert any("RiskAssessment" in i.diagnostics for i in raised.value.issues)


def test_schema_errors_become_fhirpath_issues():
    body = example()
    body["entry"][1]["resource"]["birthDate"] = "yesterday"
    with pytest.raises(FhirError) as raised:
        parse(body)
    assert raised.value.issues[0].expression == "Bundle.entry[1].resource.birthDate"


def test_wrong_bundle_type_is_rejected():
    body = copy.deepcopy(example())
    body["type"] = "searchset"
    with pytest.raises(FhirError, match="Bundle.type"):
        parse(body)


@pytest.mark.parametrize(
    ("status", "expected"),
    [("active", ConsentStatus.granted), ("rejected", ConsentStatus.refused), ("inactive", ConsentStatus.withdrawn)],
)
def test_consent_status_maps_from_fhir(status, expected):
    body = example()
    body["entry"][2]["resource"]["status"] = status
    assert parse(body).consent.status is expected


def test_missing_consent_means_not_asked():
    body = example()
    body["entry"] = [e for e in body["entry"] if e["resource"]["resourceType"] != "Consent"]
    assert parse(body).consent.status is ConsentStatus.not_asked
