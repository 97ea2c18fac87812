"""From a FHIR referral Bundle to what Pathways needs: pure functions, no I/O.

``parse_referral`` splits a Bundle into the identifying part (kept encrypted in intake, released only
in a handoff) and the routing part (``CaseSummary`` and ``ConsentState``, which travel on the bus).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.riskassessment import RiskAssessment
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

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
from shared.fhir import ODS_SYSTEM, FhirError, Issue, extension_url, fhirpath
from shared.reference import postcode_district

ACCEPTED_BUNDLE_TYPES = ("collection", "transaction", "message")
RISK_ORDER = {RiskBand.standard: 0, RiskBand.medium: 1, RiskBand.high: 2}

EXT_SETTING = extension_url("care-setting")
EXT_DASH_YES = extension_url("dash-yes-count")
EXT_JUDGEMENT = extension_url("professional-judgement")
EXT_ESCALATION = extension_url("potential-escalation")
EXT_CHARACTERISTIC = extension_url("shared-characteristic")
EXT_BY_AND_FOR = extension_url("by-and-for-preference")
EXT_NEED = extension_url("need")
EXT_SAFEGUARDING = extension_url("safeguarding-basis")


@dataclass(frozen=True)
class RiskThresholds:
    high: int = 14
    medium: int = 10


def risk_band(
    dash_yes: int,
    *,
    professional_judgement: RiskBand | None = None,
    potential_escalation: bool = False,
    thresholds: RiskThresholds = RiskThresholds(),
) -> RiskBand:
    """The DASH risk band: ``thresholds.high`` or more "yes" answers, or potential escalation, is high;
    professional judgement can raise the band but never lower it."""
    if dash_yes >= thresholds.high or potential_escalation:
        band = RiskBand.high
    elif dash_yes >= thresholds.medium:
        band = RiskBand.medium
    else:
        band = RiskBand.standard
    if professional_judgement is not None and RISK_ORDER[professional_judgement] > RISK_ORDER[band]:
        band = professional_judgement
    return band


@dataclass(frozen=True)
class ParsedReferral:
    bundle_identifier: str | None
    referrer_ods: str
    identifying: dict[str, Any]
    summary: CaseSummary
    consent: ConsentState


def _ext(resource: Any, url: str) -> list[Any]:
    return [e for e in (getattr(resource, "extension", None) or []) if e.url == url]


def _ext_value(resource: Any, url: str, kind: str) -> Any:
    found = _ext(resource, url)
    return getattr(found[0], f"value{kind}") if found else None


def _ext_codes(resource: Any, url: str) -> tuple[str, ...]:
    return tuple(sorted({e.valueCode for e in _ext(resource, url) if e.valueCode}))


def parse_bundle(body: dict[str, Any]) -> Bundle:
    """Validate a JSON object as a FHIR R4 Bundle, turning every schema problem into an issue."""
    if body.get("resourceType") != "Bundle":
        raise FhirError(422, [Issue("structure", "The body must be a FHIR Bundle.", "resourceType")])
    try:
        bundle = Bundle.model_validate(body)
    except ValidationError as exc:
        issues = [
            Issue("structure", err["msg"], fhirpath("Bundle", [p for p in err["loc"] if p != "__root__"]))
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise FhirError(422, issues) from None
    if bundle.type not in ACCEPTED_BUNDLE_TYPES:
        raise FhirError(
            422, [Issue("value", f"Bundle.type must be one of {', '.join(ACCEPTED_BUNDLE_TYPES)}.", "Bundle.type")]
        )
    return bundle


def parse_referral(bundle: Bundle, *, thresholds: RiskThresholds, now: datetime | None = None) -> ParsedReferral:
    """Extract and check the referral; raises ``FhirError`` (422) listing every problem found."""
    issues: list[Issue] = []
    found: dict[str, list[tuple[int, Any]]] = {}
    for index, entry in enumerate(bundle.entry or []):
        if entry.resource is not None:
            found.setdefault(entry.resource.get_resource_type(), []).append((index, entry.resource))

    def one(kind: str, required: bool = True) -> tuple[int, Any] | None:
        items = found.get(kind, [])
        if len(items) > 1:
            issues.append(Issue("business-rule", f"The Bundle must hold one {kind}, not {len(items)}.", "Bundle.entry"))
        if not items:
            if required:
                issues.append(Issue("required", f"The Bundle must hold a {kind}.", "Bundle.entry"))
            return None
        return items[0]

    request_entry, patient_entry = one("ServiceRequest"), one("Patient")
    consent_entry, risk_entry = one("Consent", required=False), one("RiskAssessment")

    referrer_ods = ""
    setting = CareSetting.other
    characteristics: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    by_and_for = ByAndForPreference.no_preference
    safeguarding = False
    identifying: dict[str, Any] = {}
    if request_entry:
        i, request = request_entry
        assert isinstance(request, ServiceRequest)
        path = f"Bundle.entry[{i}].resource"
        requester = request.requester
        if requester and requester.identifier and requester.identifier.system == ODS_SYSTEM and requester.identifier.value:
            referrer_ods = requester.identifier.value
        else:
            issues.append(
                Issue("required", "ServiceRequest.requester must identify the referring organisation by ODS code.",
                      f"{path}.requester.identifier")
            )
        setting_code = _ext_value(request, EXT_SETTING, "Code")
        if setting_code:
            try:
                setting = CareSetting(setting_code)
            except ValueError:
                issues.append(Issue("code-invalid", f"Unknown care setting '{setting_code}'.", f"{path}.extension"))
        characteristics = _ext_codes(request, EXT_CHARACTERISTIC)
        needs = _ext_codes(request, EXT_NEED)
        preference = _ext_value(request, EXT_BY_AND_FOR, "Code")
        if preference:
            try:
                by_and_for = ByAndForPreference(preference)
            except ValueError:
                issues.append(Issue("code-invalid", f"Unknown by-and-for preference '{preference}'.", f"{path}.extension"))
        safeguarding = bool(_ext_value(request, EXT_SAFEGUARDING, "Boolean"))
        identifying["safe_contact"] = request.patientInstruction

    district = None
    if patient_entry:
        i, patient = patient_entry
        assert isinstance(patient, Patient)
        path = f"Bundle.entry[{i}].resource"
        postcode = next((a.postalCode for a in (patient.address or []) if a.postalCode), None)
        district = postcode_district(postcode) if postcode else None
        if not district:
            issues.append(
                Issue("value" if postcode else "required",
                      "Patient.address.postalCode must be a full UK postcode." if postcode
                      else "Patient.address.postalCode is required to find local services.",
                      f"{path}.address.postalCode")
            )
        identifying.update(
            name=[n.model_dump(mode="json", exclude_none=True) for n in (patient.name or [])],
            birth_date=patient.birthDate.isoformat() if patient.birthDate else None,
            gender=patient.gender,
            address=[a.model_dump(mode="json", exclude_none=True) for a in (patient.address or [])],
            telecom=[t.model_dump(mode="json", exclude_none=True) for t in (patient.telecom or [])],
        )

    band = RiskBand.standard
    if risk_entry:
        i, risk = risk_entry
        assert isinstance(risk, RiskAssessment)
        path = f"Bundle.entry[{i}].resource"
        yes = _ext_value(risk, EXT_DASH_YES, "Integer")
        judgement_code = _ext_value(risk, EXT_JUDGEMENT, "Code")
        judgement = None
        if yes is None or not 0 <= yes <= 24:
            issues.append(Issue("required", "RiskAssessment needs the DASH 'yes' count (0 to 24).", f"{path}.extension"))
            yes = 0
        if judgement_code:
            try:
                judgement = RiskBand(judgement_code)
            except ValueError:
                issues.append(Issue("code-invalid", f"Unknown risk band '{judgement_code}'.", f"{path}.extension"))
        band = risk_band(
            yes,
            professional_judgement=judgement,
            potential_escalation=bool(_ext_value(risk, EXT_ESCALATION, "Boolean")),
            thresholds=thresholds,
        )
        identifying["dash_yes_count"] = yes

    consent = ConsentState(status=ConsentStatus.not_asked, safeguarding_basis=safeguarding)
    if consent_entry:
        consent = consent_state(consent_entry[1], safeguarding_basis=safeguarding, now=now)

    if issues:
        raise FhirError(422, issues)
    identifier = bundle.identifier
    return ParsedReferral(
        bundle_identifier=f"{identifier.system or ''}|{identifier.value}" if identifier and identifier.value else None,
        referrer_ods=referrer_ods,
        identifying=identifying,
        summary=CaseSummary(
            postcode_district=district,
            risk_band=band,
            setting=setting,
            needs=needs,
            characteristics=characteristics,
            preferences=RoutingPreferences(by_and_for=by_and_for),
        ),
        consent=consent,
    )


def consent_state(consent: Consent, *, safeguarding_basis: bool, now: datetime | None = None) -> ConsentState:
    """The consent as routing sees it: status, the scopes it permits, and when it ends."""
    status = {
        "active": ConsentStatus.granted,
        "rejected": ConsentStatus.refused,
        "inactive": ConsentStatus.withdrawn,
    }.get(consent.status, ConsentStatus.not_asked)
    provision = consent.provision
    if status is ConsentStatus.granted and provision is not None and provision.type == "deny":
        status = ConsentStatus.refused
    scopes: set[ConsentScope] = set()
    expires_at = None
    if provision is not None:
        for actor in provision.actor or []:
            for coding in (actor.role.coding or []) if actor.role else []:
                if coding.code in ConsentScope._value2member_map_:
                    scopes.add(ConsentScope(coding.code))
        if provision.period and provision.period.end:
            end = provision.period.end
            expires_at = end if isinstance(end, datetime) else datetime.combine(_as_date(end), time.max, UTC)
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
    return ConsentState(
        status=status,
        scopes=tuple(sorted(scopes)),
        expires_at=expires_at,
        safeguarding_basis=safeguarding_basis,
    )


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
