"""The referral profile's derivations: every example, DASH both ways, per-area thresholds, consent,
messages, cancellations, and that nothing identifying reaches the routing attributes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from uuid import uuid4

import pytest

from services.intake.domain import (
    ParsedCancellation,
    ParsedReferral,
    ReferralRules,
    RiskThresholds,
    age_band,
    consent_state,
    parse_bundle,
    parse_consent,
    parse_submission,
    render_safe_contact,
    thresholds_for,
)
from services.intake.profile import DASH_QUESTIONNAIRE, ORGANISATION_ID_SYSTEM
from shared.events import ConsentScope, ConsentStatus, ReferralReceived, RiskBand
from shared.fhir import FhirError
from shared.reference import AgeBand
from tests.conftest import EXAMPLES

NOW = datetime(2026, 11, 22, tzinfo=UTC)
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))


def load(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def submit(body: dict, **rules) -> ParsedReferral | ParsedCancellation:
    endpoint = "message" if body.get("type") == "message" else "bundle"
    return parse_submission(parse_bundle(body, endpoint=endpoint), rules=ReferralRules(**rules), now=NOW)


def resource(body: dict, kind: str) -> dict:
    return next(e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == kind)


def identifying_strings(body: dict) -> list[str]:
    patient = resource(body, "Patient")
    values = [patient["birthDate"], patient["address"][0]["postalCode"], patient["address"][0]["line"][0]]
    values += [t["value"] for t in patient["telecom"]] + [n["family"] for n in patient["name"]]
    values += [g for n in patient["name"] for g in n["given"]]
    values += [patient["address"][0]["postalCode"].split()[1]]
    request = resource(body, "ServiceRequest")
    if request.get("patientInstruction"):
        values.append(request["patientInstruction"])
    values += [n["text"] for n in request.get("note", [])]
    return values


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_is_a_valid_referral_whose_event_holds_nothing_identifying(path):
    body = json.loads(path.read_text())
    parsed = submit(body)
    assert isinstance(parsed, ParsedReferral)
    assert parsed.summary.postcode_district.startswith("LS")  # Leeds: the sample directory's area
    event = ReferralReceived(
        case_id=uuid4(), referrer_ods=parsed.referrer_ods, summary=parsed.summary, consent=parsed.consent
    ).model_dump_json()
    for value in identifying_strings(body):
        assert value not in event
    assert parsed.identifying["name"] and parsed.identifying["safe_contact"]


def test_ed_message_is_high_risk_by_its_dash_checklist_for_idva_and_marac():
    parsed = submit(load("ed-high-risk-message.json"))
    assert parsed.summary.risk_band is RiskBand.high and parsed.summary.setting == "emergency-department"
    assert parsed.identifying["dash_yes_count"] == 16
    assert set(parsed.consent.scopes) == {ConsentScope.idva, ConsentScope.marac}
    # The ODS code came through the PractitionerRole; the referrer's contact is kept for the handoff.
    assert parsed.referrer_ods == "RX001" and parsed.identifying["referrer"]["telecom"][0]["value"] == "0113 496 0000"


def test_by_and_for_examples_carry_characteristics_preferences_and_language_needs():
    deaf = submit(load("by-and-for-deaf-bsl.json"))
    assert deaf.summary.characteristics == ("deaf",) and deaf.summary.preferences.by_and_for == "wanted"
    assert {"bsl", "interpreter", "disability-access"} <= set(deaf.summary.needs)
    assert deaf.summary.preferences.worker_gender == "female"
    minoritised = submit(load("by-and-for-black-minoritised-maternity.json"))
    assert minoritised.summary.risk_band is RiskBand.medium and minoritised.summary.language == "ur"
    assert "honour-based-abuse" in minoritised.summary.abuse_types
    assert minoritised.consent.organisations == ("kinara-womens-network",)
    # Recorded ethnicity is identifying data; only the characteristic she chose to share routes.
    assert minoritised.identifying["ethnic_category"]["coding"][0]["code"] == "H"
    assert "ethnic" not in minoritised.summary.model_dump_json()


def test_high_risk_without_consent_records_the_safeguarding_basis():
    parsed = submit(load("high-risk-no-consent-safeguarding.json"))
    assert parsed.summary.risk_band is RiskBand.high
    assert parsed.consent.status is ConsentStatus.refused and parsed.consent.safeguarding_basis
    assert parsed.identifying["safe_contact"].startswith("DO NOT CONTACT")


def dash_body(yes: int, *, drop: str | None = None) -> dict:
    body = load("ed-high-risk-message.json")
    checklist = resource(body, "QuestionnaireResponse")
    for item in checklist["item"]:
        item["answer"] = [{"valueBoolean": int(item["linkId"]) <= yes}]
    checklist["extension"] = []
    checklist["item"] = [i for i in checklist["item"] if i["linkId"] != drop]
    return body


@pytest.mark.parametrize(("yes", "band"), [(0, RiskBand.standard), (9, RiskBand.standard), (10, RiskBand.medium),
                                           (13, RiskBand.medium), (14, RiskBand.high), (24, RiskBand.high)])
def test_dash_checklist_answers_give_the_band(yes, band):
    assert submit(dash_body(yes)).summary.risk_band is band


def test_dash_checklist_must_hold_all_24_items():
    with pytest.raises(FhirError) as raised:
        submit(dash_body(3, drop="17"))
    assert raised.value.status == 422
    assert any("missing: 17" in i.diagnostics and i.expression.endswith(".item") for i in raised.value.issues)


def test_checklist_and_risk_assessment_must_agree():
    body = dash_body(5)
    body["entry"].append({"resource": {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "x"},
                                       "extension": [{"url": "https://pathways.example.org/fhir/StructureDefinition/"
                                                             "dash-yes-count", "valueInteger": 6}]}})
    with pytest.raises(FhirError, match="disagree"):
        submit(body)


def test_thresholds_are_chosen_per_area_district_before_postcode_area():
    default = RiskThresholds()
    areas = {"LS": RiskThresholds(high=12, medium=8), "LS7": RiskThresholds(high=13, medium=9)}
    assert thresholds_for("LS7", default, areas) == RiskThresholds(13, 9)
    assert thresholds_for("LS70", default, areas) == RiskThresholds(12, 8)  # same area, other district
    assert thresholds_for("L7", default, areas) is default  # Liverpool is not Leeds
    assert thresholds_for(None, default, areas) is default


def test_area_thresholds_apply_when_parsing():
    body = dash_body(12)
    assert submit(body).summary.risk_band is RiskBand.medium
    assert submit(body, area_thresholds={"LS": RiskThresholds(high=12, medium=8)}).summary.risk_band is RiskBand.high


@pytest.mark.parametrize(("born", "band"), [(date(2011, 1, 1), AgeBand.under_16), (date(2009, 11, 23), AgeBand.age_16_17),
                                            (date(2008, 11, 22), AgeBand.age_18_24), (date(1966, 11, 23), AgeBand.age_25_59),
                                            (date(1966, 11, 22), AgeBand.age_60_plus)])
def test_age_band_not_date_of_birth(born, band):
    assert age_band(born, NOW.date()) is band


def test_message_bundles_need_their_header_first_and_only_at_process_message():
    body = load("ed-high-risk-message.json")
    with pytest.raises(FhirError, match=r"\$process-message"):
        parse_bundle(body, endpoint="bundle")
    with pytest.raises(FhirError, match="/fhir/Bundle"):
        parse_bundle(load("gp-referral.json"), endpoint="message")
    body["entry"].append(body["entry"].pop(0))
    with pytest.raises(FhirError) as raised:
        submit(body)
    assert raised.value.issues[0].expression == "Bundle.entry[0].resource"


def test_transaction_entries_need_a_request():
    body = load("by-and-for-deaf-bsl.json")
    del body["entry"][2]["request"]
    with pytest.raises(FhirError) as raised:
        submit(body)
    assert [i.expression for i in raised.value.issues] == ["Bundle.entry[2].request"]


def test_unknown_codes_are_reported_where_they_are():
    body = load("gp-referral.json")
    request = resource(body, "ServiceRequest")
    request["extension"][0]["valueCode"] = "spaceship"
    request["extension"].append({"url": "https://pathways.example.org/fhir/StructureDefinition/need",
                                 "valueCode": "a-pony"})
    request["status"] = "completed"
    with pytest.raises(FhirError) as raised:
        submit(body)
    diagnostics = " ".join(i.diagnostics for i in raised.value.issues)
    assert "spaceship" in diagnostics and "a-pony" in diagnostics and "status" in diagnostics
    assert "Bundle.entry[0].resource.status" in {i.expression for i in raised.value.issues}


def test_revoked_service_request_is_a_cancellation():
    body = {"resourceType": "Bundle", "type": "collection",
            "identifier": {"system": "https://sample-ehr.example.org/cancel-id", "value": "C-1"},
            "entry": [{"resource": {
                "resourceType": "ServiceRequest", "status": "revoked", "intent": "order", "subject": {"display": "x"},
                "identifier": [{"system": "https://sample-ehr.example.org/referral-id", "value": "GP-REF-000001"}],
                "requester": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y00001"}},
                "extension": [{"url": "https://pathways.example.org/fhir/StructureDefinition/cancellation-reason",
                               "valueCode": "survivor-request"}]}}]}
    parsed = submit(body)
    assert parsed == ParsedCancellation(
        bundle_identifier="https://sample-ehr.example.org/cancel-id|C-1", referrer_ods="Y00001",
        service_request_identifier="https://sample-ehr.example.org/referral-id|GP-REF-000001",
        service_request_id=None, reason="survivor-request",
    )


def test_consent_scopes_organisations_expiry_and_status():
    consent = resource(load("gp-referral.json"), "Consent")
    consent["provision"]["actor"].append({"role": {"text": "recipient"}, "reference": {
        "identifier": {"system": ORGANISATION_ID_SYSTEM, "value": "aire-valley-da"}}})
    state = consent_state(parse_consent(consent), safeguarding_basis=False)
    assert state.status is ConsentStatus.granted and state.organisations == ("aire-valley-da",)
    assert state.expires_at == datetime(2027, 5, 20, 23, 59, 59, 999999, tzinfo=UTC)
    consent["provision"]["type"] = "deny"
    assert consent_state(parse_consent(consent), safeguarding_basis=False).status is ConsentStatus.refused
    consent["status"] = "entered-in-error"
    with pytest.raises(FhirError, match="Consent.status"):
        consent_state(parse_consent(consent), safeguarding_basis=False)


def test_granted_consent_must_say_to_whom():
    consent = resource(load("gp-referral.json"), "Consent")
    del consent["provision"]["actor"]
    with pytest.raises(FhirError, match="provision.actor"):
        consent_state(parse_consent(consent), safeguarding_basis=False)


def test_safe_contact_puts_do_not_contact_first():
    text = render_safe_contact({"voicemail_allowed": True, "do_not_contact": True}, "Call the ward first.")
    assert text == "DO NOT CONTACT the survivor directly. Voicemail may be left. Call the ward first."
    assert render_safe_contact({}, None) is None


def test_snomed_flags_map_through_configuration():
    body = load("gp-referral.json")
    body["entry"].append({"resource": {"resourceType": "Flag", "status": "active", "subject": {"reference": "x"},
                                       "code": {"coding": [{"system": "http://snomed.info/sct", "code": "123456"}]}}})
    assert "forced-marriage" not in submit(body).summary.abuse_types
    assert "forced-marriage" in submit(body, snomed_flags={"123456": "forced-marriage"}).summary.abuse_types


def test_the_dash_questionnaire_url_is_the_documented_one():
    assert DASH_QUESTIONNAIRE == "https://pathways.example.org/fhir/Questionnaire/safelives-dash"


def test_area_thresholds_and_snomed_map_come_from_the_environment(monkeypatch):
    from pydantic import ValidationError

    from services.intake.settings import IntakeSettings

    monkeypatch.setenv("INTAKE_DASH_AREA_THRESHOLDS", '{"ls": [12, 8]}')
    monkeypatch.setenv("INTAKE_SAFEGUARDING_SNOMED", '{"123456": "fgm"}')
    assert IntakeSettings().referral_rules() == ReferralRules(
        thresholds=RiskThresholds(14, 10),
        area_thresholds={"LS": RiskThresholds(high=12, medium=8)},
        snomed_flags={"123456": "fgm"},
    )
    monkeypatch.setenv("INTAKE_DASH_AREA_THRESHOLDS", '{"LS": [8, 12]}')
    with pytest.raises(ValidationError, match="medium < high"):
        IntakeSettings()
    monkeypatch.setenv("INTAKE_DASH_AREA_THRESHOLDS", "{}")
    monkeypatch.setenv("INTAKE_SAFEGUARDING_SNOMED", '{"1": "not-a-kind-of-abuse"}')
    with pytest.raises(ValidationError, match="unknown abuse types"):
        IntakeSettings()
