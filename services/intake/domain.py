"""From a FHIR referral Bundle to what Pathways needs: pure functions, no I/O.

``parse_submission`` checks a Bundle against the referral profile (``services.intake.profile``,
documented in ``docs/fhir-referral-profile.md``) and splits a referral into the identifying part (kept
encrypted in intake, released only in a handoff) and the routing part (``CaseSummary`` and
``ConsentState``, which travel on the bus). Every problem found becomes one ``Issue`` with a FHIRPath
expression, so an integration team sees all of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.messageheader import MessageHeader
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from fhir.resources.R4B.riskassessment import RiskAssessment
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from services.intake import profile as p
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
from shared.fhir import ODS_SYSTEM, FhirError, Issue, fhirpath, remember_fhir_model_lookups
from shared.fhir_fast import fast_validate
from shared.geography import postcode_sector
from shared.reference import AbuseType, AgeBand, Community, Gender, Need, ServiceType, postcode_district

M = TypeVar("M", Bundle, Consent)
remember_fhir_model_lookups()
BUNDLE_TYPES_BY_ENDPOINT = {"bundle": ("collection", "transaction"), "message": ("message",)}
RISK_ORDER = {RiskBand.standard: 0, RiskBand.medium: 1, RiskBand.high: 2}


@dataclass(frozen=True)
class RiskThresholds:
    """DASH "yes" counts at or above which a case is high or medium risk."""

    high: int = 14
    medium: int = 10


def thresholds_for(
    district: str | None, default: RiskThresholds, by_area: Mapping[str, RiskThresholds]
) -> RiskThresholds:
    """The thresholds an area set: its postcode district ("LS7") first, then its postcode area ("LS").

    Areas agree their own DASH thresholds with their MARAC; anywhere without one uses the default.
    """
    if not district:
        return default
    area = re.match(r"[A-Z]*", district).group()  # type: ignore[union-attr] - "*" always matches
    return by_area.get(district) or by_area.get(area) or default


@dataclass(frozen=True)
class ReferralRules:
    """What a deployment decides about reading referrals: its DASH thresholds (default and per area)
    and the SNOMED CT safeguarding concepts its clinical safety officer mapped to abuse types."""

    thresholds: RiskThresholds = RiskThresholds()
    area_thresholds: Mapping[str, RiskThresholds] = field(default_factory=dict)
    snomed_flags: Mapping[str, str] = field(default_factory=dict)


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


def age_band(birth_date: date, today: date) -> AgeBand:
    """Age as routing may know it: a band, never the date of birth."""
    age = today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))
    if age < 16:
        return AgeBand.under_16
    if age < 18:
        return AgeBand.age_16_17
    if age < 25:
        return AgeBand.age_18_24
    if age < 60:
        return AgeBand.age_25_59
    return AgeBand.age_60_plus


@dataclass(frozen=True)
class ParsedReferral:
    bundle_identifier: str | None
    referrer_ods: str
    identifying: dict[str, Any]
    summary: CaseSummary
    consent: ConsentState
    # The EHR's own id for the referral ("system|value"), and the ServiceRequest's logical id.
    service_request_identifier: str | None = None


@dataclass(frozen=True)
class ParsedCancellation:
    """The referrer revoked a referral it made earlier (ServiceRequest.status = revoked)."""

    bundle_identifier: str | None
    referrer_ods: str
    service_request_identifier: str | None
    service_request_id: str | None
    reason: str | None


@dataclass
class _Bundle:
    """A Bundle's resources by type, with their positions, and its internal references resolved."""

    bundle: Bundle
    # The JSON the Bundle was validated from, when the caller has it: see ``as_sent``.
    body: dict[str, Any] | None = None
    issues: list[Issue] = field(default_factory=list)
    by_type: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    by_reference: dict[str, Any] = field(default_factory=dict)
    sent: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sent_entries = self.body.get("entry") if self.body is not None else None
        for index, entry in enumerate(self.bundle.entry or []):
            resource = entry.resource
            if resource is None:
                continue
            if type(sent_entries) is list and index < len(sent_entries):
                sent_resource = sent_entries[index].get("resource") if type(sent_entries[index]) is dict else None
                if type(sent_resource) is dict:
                    self.sent[id(resource)] = sent_resource
            kind = resource.get_resource_type()
            self.by_type.setdefault(kind, []).append((index, resource))
            if entry.fullUrl:
                self.by_reference[entry.fullUrl] = resource
            if resource.id:
                self.by_reference[f"{kind}/{resource.id}"] = resource

    def one(self, kind: str, *, required: bool = True) -> tuple[str, Any] | None:
        """The Bundle's single resource of a kind, with its FHIRPath; an issue when there are more or none."""
        items = self.by_type.get(kind, [])
        if len(items) > 1:
            self.issues.append(
                Issue("business-rule", f"The Bundle must hold one {kind}, not {len(items)}.", "Bundle.entry")
            )
        if not items:
            if required:
                self.issues.append(Issue("required", f"The Bundle must hold a {kind}.", "Bundle.entry"))
            return None
        index, resource = items[0]
        return f"Bundle.entry[{index}].resource", resource

    def as_sent(self, resource: Any, *path: str | int) -> Any:
        """The JSON at ``path`` (keys and list positions) inside a resource as the sender's JSON has it
        (the validated JSON: what ``model_dump(mode="json", exclude_none=True)`` of the element would give,
        up to how a dateTime's precision is written, without the cost of fhir.resources' serializer,
        about 100 µs an element: issue 9), or ``None`` when the JSON is not at hand or has no such element.
        """
        value: Any = self.sent.get(id(resource))
        for step in path:
            if type(step) is int:
                if type(value) is not list or step >= len(value):
                    return None
            elif type(value) is not dict or step not in value:
                return None
            value = value[step]
        return value

    def resolve(self, reference: Any) -> Any:
        return (
            self.by_reference.get(reference.reference)
            if reference is not None and reference.reference
            else None
        )

    def code(self, path: str, value: str | None, vocabulary: type, what: str) -> Any:
        """A code from one of the shared vocabularies, or an issue naming the allowed values."""
        if value is None:
            return None
        try:
            return vocabulary(value)
        except ValueError:
            allowed = ", ".join(v.value for v in vocabulary)
            self.issues.append(Issue("code-invalid", f"Unknown {what} '{value}' (one of: {allowed}).", path))
            return None


def _ext(element: Any, url: str) -> list[tuple[int, Any]]:
    return [(i, e) for i, e in enumerate(getattr(element, "extension", None) or []) if e.url == url]


def _ext_value(element: Any, url: str, kind: str) -> Any:
    found = _ext(element, url)
    return getattr(found[0][1], f"value{kind}") if found else None


def _ext_codes(
    ctx: _Bundle, element: Any, path: str, url: str, vocabulary: type, what: str
) -> tuple[str, ...]:
    codes = set()
    for index, ext in _ext(element, url):
        value = ctx.code(f"{path}.extension[{index}].valueCode", ext.valueCode, vocabulary, what)
        if value is not None:
            codes.add(str(value))
    return tuple(sorted(codes))


def _system_value(identifier: Any) -> str | None:
    if identifier is None or not identifier.value:
        return None
    return f"{identifier.system or ''}|{identifier.value}"


def parse_bundle(body: dict[str, Any], *, endpoint: str = "bundle") -> Bundle:
    """Validate a JSON object as a FHIR R4 Bundle of a type this endpoint takes; every schema problem
    becomes an issue with its FHIRPath."""
    if body.get("resourceType") != "Bundle":
        raise FhirError(422, [Issue("structure", "The body must be a FHIR Bundle.", "resourceType")])
    bundle = _validate(Bundle, body)
    accepted = BUNDLE_TYPES_BY_ENDPOINT[endpoint]
    if bundle.type not in accepted:
        hint = (
            "post message Bundles to /fhir/$process-message"
            if bundle.type == "message"
            else ("post transaction and collection Bundles to /fhir/Bundle" if endpoint == "message" else "")
        )
        raise FhirError(
            422,
            [
                Issue(
                    "value",
                    f"Bundle.type must be one of {', '.join(accepted)} here"
                    + (f"; {hint}." if hint else "."),
                    "Bundle.type",
                )
            ],
        )
    return bundle


def parse_submission(
    bundle: Bundle,
    *,
    rules: ReferralRules = ReferralRules(),
    now: datetime | None = None,
    body: dict[str, Any] | None = None,
) -> ParsedReferral | ParsedCancellation:
    """A new referral, or the cancellation of an earlier one (its ServiceRequest revoked). ``body``, the
    JSON ``bundle`` was validated from, when given, is where the survivor's identifying details are
    copied from as sent (``_Bundle.as_sent``)."""
    try:
        ctx = _Bundle(bundle, body)
        request = ctx.one("ServiceRequest")
        if request is not None and request[1].status == "revoked":
            return _parse_cancellation(ctx, *request)
        return _parse_referral(ctx, rules=rules, now=now)
    except (AttributeError, TypeError, KeyError, IndexError) as exc:
        # fhir.resources accepts some shapes the profile rules do not expect (a missing 1..1 element,
        # a reference to the wrong kind of resource). Whatever slipped past the checks above is still
        # the sender's malformed Bundle: a 422 naming the problem's kind, never a 500.
        raise FhirError(
            422,
            [
                Issue(
                    "structure",
                    f"The Bundle does not follow the referral profile ({type(exc).__name__}); "
                    "see docs/fhir-referral-profile.md.",
                    "Bundle",
                )
            ],
        ) from None


def _check_message(ctx: _Bundle, request: tuple[str, ServiceRequest] | None) -> None:
    """A message Bundle starts with a MessageHeader whose focus is the referral (as in BaRS)."""
    if ctx.bundle.type != "message":
        if ctx.bundle.type == "transaction":
            for index, entry in enumerate(ctx.bundle.entry or []):
                if entry.request is None or entry.request.method not in ("POST", "PUT"):
                    ctx.issues.append(
                        Issue(
                            "required",
                            "Each transaction entry needs request.method POST or PUT.",
                            f"Bundle.entry[{index}].request",
                        )
                    )
        return
    entries = ctx.bundle.entry or []
    header = entries[0].resource if entries else None
    if not isinstance(header, MessageHeader):
        ctx.issues.append(
            Issue(
                "structure",
                "A message Bundle's first entry must be a MessageHeader.",
                "Bundle.entry[0].resource",
            )
        )
        return
    event = header.eventCoding
    if event is None or event.code not in p.MESSAGE_EVENTS:
        ctx.issues.append(
            Issue(
                "code-invalid",
                f"MessageHeader.eventCoding must be {', '.join(p.MESSAGE_EVENTS)}.",
                "Bundle.entry[0].resource.eventCoding",
            )
        )
    if request is not None and not any(ctx.resolve(focus) is request[1] for focus in header.focus or []):
        ctx.issues.append(
            Issue(
                "business-rule",
                "MessageHeader.focus must reference the ServiceRequest.",
                "Bundle.entry[0].resource.focus",
            )
        )
    if not (ctx.bundle.identifier and ctx.bundle.identifier.value):
        ctx.issues.append(Issue("required", "A message Bundle needs Bundle.identifier.", "Bundle.identifier"))


def _referrer_ods(ctx: _Bundle, path: str, request: ServiceRequest) -> tuple[str, dict[str, Any]]:
    """The referring organisation's ODS code: on the requester itself, or on the PractitionerRole (or its
    Organization) that the requester references inside the Bundle. Also who to call back."""
    requester = request.requester
    referrer: dict[str, Any] = {}
    candidates = [requester.identifier] if requester is not None and requester.identifier else []
    role = ctx.resolve(requester) if requester is not None else None
    if role is not None and role.get_resource_type() == "PractitionerRole":
        practitioner = ctx.resolve(role.practitioner)
        if practitioner is not None and practitioner.get_resource_type() != "Practitioner":
            practitioner = None  # a reference to something else names nobody
        referrer = {
            "role": [c.text or (c.coding[0].display if c.coding else None) for c in role.code or []],
            "practitioner": practitioner.name[0].text
            if practitioner is not None and practitioner.name
            else (role.practitioner.display if role.practitioner else None),
            "telecom": [t.model_dump(mode="json", exclude_none=True) for t in role.telecom or []],
        }
        organisation = role.organization
        if organisation is not None:
            candidates.append(organisation.identifier)
            resolved = ctx.resolve(organisation)
            if resolved is not None and resolved.get_resource_type() == "Organization":
                candidates.extend(resolved.identifier or [])
    elif role is not None and role.get_resource_type() == "Organization":
        candidates.extend(role.identifier or [])
    for identifier in candidates:
        if identifier is not None and identifier.system == ODS_SYSTEM and identifier.value:
            return identifier.value, referrer
    ctx.issues.append(
        Issue(
            "required",
            "ServiceRequest.requester must identify the referring organisation by ODS code "
            "(directly, or through a PractitionerRole in the Bundle).",
            f"{path}.requester.identifier",
        )
    )
    return "", referrer


def _parse_cancellation(ctx: _Bundle, path: str, request: ServiceRequest) -> ParsedCancellation:
    _check_message(ctx, (path, request))
    referrer_ods, _ = _referrer_ods(ctx, path, request)
    identifier = next((_system_value(i) for i in request.identifier or [] if i.value), None)
    if identifier is None and not request.id:
        ctx.issues.append(
            Issue(
                "required",
                "A revoked ServiceRequest must carry the referral's identifier or id.",
                f"{path}.identifier",
            )
        )
    reason = _ext_value(request, p.EXT_CANCELLATION_REASON, "Code")
    if reason is not None and reason not in p.CANCELLATION_REASONS:
        ctx.issues.append(
            Issue("code-invalid", f"Unknown cancellation reason '{reason}'.", f"{path}.extension")
        )
    if ctx.issues:
        raise FhirError(422, ctx.issues)
    return ParsedCancellation(
        bundle_identifier=_system_value(ctx.bundle.identifier),
        referrer_ods=referrer_ods,
        service_request_identifier=identifier,
        service_request_id=request.id,
        reason=reason,
    )


def parse_referral(
    bundle: Bundle, *, rules: ReferralRules = ReferralRules(), now: datetime | None = None
) -> ParsedReferral:
    """Extract and check a referral; raises ``FhirError`` (422) listing every problem found."""
    return _parse_referral(_Bundle(bundle), rules=rules, now=now)


def _parse_referral(ctx: _Bundle, *, rules: ReferralRules, now: datetime | None) -> ParsedReferral:
    now = now or datetime.now(UTC)
    bundle = ctx.bundle
    request_entry, patient_entry = ctx.one("ServiceRequest"), ctx.one("Patient")
    consent_entry = ctx.one("Consent", required=False)
    _check_message(ctx, request_entry)

    identifying: dict[str, Any] = {}
    summary: dict[str, Any] = {"setting": CareSetting.other}
    abuse_types: set[str] = set()
    preferences: dict[str, Any] = {}
    referrer_ods, safeguarding, needs, sr_identifier = "", False, set(), None
    patient = None
    if patient_entry:
        patient = patient_entry[1]
        summary_patient, identifying_patient = _patient(ctx, patient_entry[0], patient, now)
        needs |= summary_patient.pop("derived_needs")
        summary.update(summary_patient)
        identifying.update(identifying_patient)
    if request_entry:
        path, request = request_entry
        if request.status != "active":
            ctx.issues.append(
                Issue(
                    "value",
                    "A new referral's ServiceRequest.status must be 'active' "
                    "('revoked' cancels an earlier one).",
                    f"{path}.status",
                )
            )
        if patient is not None and ctx.resolve(request.subject) is not patient:
            ctx.issues.append(
                Issue(
                    "business-rule",
                    "ServiceRequest.subject must reference the Patient in the Bundle.",
                    f"{path}.subject",
                )
            )
        referrer_ods, referrer = _referrer_ods(ctx, path, request)
        identifying["referrer"] = referrer
        sr_identifier = next((_system_value(i) for i in request.identifier or [] if i.value), None)
        categories = [
            c.code
            for cc in request.category or []
            for c in cc.coding or []
            if c.system == p.REFERRAL_CATEGORY_SYSTEM
        ]
        abuse_types |= {p.REFERRAL_CATEGORIES[c] for c in categories if c in p.REFERRAL_CATEGORIES}
        if not abuse_types:
            ctx.issues.append(
                Issue(
                    "required",
                    "ServiceRequest.category must hold intimate-partner-violence or "
                    f"sexual-violence from {p.REFERRAL_CATEGORY_SYSTEM}.",
                    f"{path}.category",
                )
            )
        setting = ctx.code(
            f"{path}.extension", _ext_value(request, p.EXT_SETTING, "Code"), CareSetting, "care setting"
        )
        summary["setting"] = setting or CareSetting.other
        summary["characteristics"] = _ext_codes(
            ctx, request, path, p.EXT_CHARACTERISTIC, Community, "characteristic"
        )
        needs |= set(_ext_codes(ctx, request, path, p.EXT_NEED, Need, "need"))
        preferences["by_and_for"] = (
            ctx.code(
                f"{path}.extension",
                _ext_value(request, p.EXT_BY_AND_FOR, "Code"),
                ByAndForPreference,
                "by-and-for preference",
            )
            or ByAndForPreference.no_preference
        )
        worker = ctx.code(
            f"{path}.extension", _ext_value(request, p.EXT_WORKER_GENDER, "Code"), Gender, "worker gender"
        )
        preferences["worker_gender"] = str(worker) if worker else None
        preferences["declined_service_types"] = _ext_codes(
            ctx, request, path, p.EXT_DECLINED_SERVICE_TYPE, ServiceType, "service type"
        )
        safeguarding = bool(_ext_value(request, p.EXT_SAFEGUARDING, "Boolean"))
        contact_rules = _safe_contact(request)
        identifying["safe_contact"] = render_safe_contact(contact_rules, request.patientInstruction)
        identifying["safe_contact_rules"] = contact_rules
        identifying["notes"] = [n.text for n in request.note or [] if n.text]

    abuse_types |= _flags(ctx, rules.snomed_flags)
    district = summary.get("postcode_district")
    dash = _dash(ctx)
    band = RiskBand.standard
    if dash is not None:
        yes, judgement, escalation = dash
        band = risk_band(
            yes,
            professional_judgement=judgement,
            potential_escalation=escalation,
            thresholds=thresholds_for(district, rules.thresholds, rules.area_thresholds),
        )
        identifying["dash_yes_count"] = yes

    consent = ConsentState(status=ConsentStatus.not_asked, safeguarding_basis=safeguarding)
    if consent_entry:
        consent = consent_state(
            consent_entry[1], safeguarding_basis=safeguarding, issues=ctx.issues, path=consent_entry[0]
        )
    if ctx.issues:
        raise FhirError(422, ctx.issues)
    language = summary.pop("language", None)
    return ParsedReferral(
        bundle_identifier=_system_value(bundle.identifier),
        referrer_ods=referrer_ods,
        identifying=identifying,
        summary=CaseSummary(
            **summary,
            risk_band=band,
            needs=tuple(sorted(needs)),
            abuse_types=tuple(sorted(abuse_types)),
            language=language,
            preferences=RoutingPreferences(**preferences, language=language),
        ),
        consent=consent,
        service_request_identifier=sr_identifier,
    )


def _patient(
    ctx: _Bundle, path: str, patient: Patient, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What routing may know of the survivor, and the identifying rest (kept encrypted)."""
    routing: dict[str, Any] = {"derived_needs": set()}
    postcode = next((a.postalCode for a in patient.address or [] if a.postalCode), None)
    district = postcode_district(postcode) if postcode else None
    if not district:
        ctx.issues.append(
            Issue(
                "value" if postcode else "required",
                "Patient.address.postalCode must be a full UK postcode."
                if postcode
                else "Patient.address.postalCode is required to find local services.",
                f"{path}.address.postalCode",
            )
        )
    if not patient.name:
        ctx.issues.append(
            Issue(
                "required", "Patient.name is required: the service must know whom to contact.", f"{path}.name"
            )
        )
    # The sector ("LS7 3") is the most precise area that does not identify: the full postcode stays here.
    routing["postcode_district"] = district
    routing["postcode_sector"] = postcode_sector(postcode) if district and postcode else None
    if patient.gender:
        routing["gender"] = str(
            ctx.code(f"{path}.gender", patient.gender, Gender, "gender") or Gender.unknown
        )
    if patient.birthDate:
        routing["age_band"] = age_band(_as_date(patient.birthDate), now.date())

    language, interpreter = None, bool(_ext_value(patient, p.R4_INTERPRETER_REQUIRED, "Boolean"))
    for _, communication in _ext(patient, p.UKCORE_NHS_COMMUNICATION):
        interpreter = interpreter or bool(_ext_value(communication, "interpreterRequired", "Boolean"))
        concept = _ext_value(communication, "language", "CodeableConcept")
        if concept is not None and language is None:
            language = next((c.code for c in concept.coding or [] if c.code), None)
    preferred = sorted(patient.communication or [], key=lambda c: not c.preferred)
    for communication in preferred:
        language = language or next((c.code for c in communication.language.coding or [] if c.code), None)
    if language and language.lower() in p.BSL_CODES:
        routing["derived_needs"].add(Need.bsl)
    if interpreter:
        routing["derived_needs"].add(Need.interpreter)
    # English is the default: routing only needs to know about other languages.
    routing["language"] = language if language and not language.lower().startswith("en") else None

    def elements(name: str) -> list[dict[str, Any]]:
        sent = ctx.as_sent(patient, name)
        if type(sent) is list:
            return sent
        return [e.model_dump(mode="json", exclude_none=True) for e in getattr(patient, name) or []]

    ethnic_json = None
    if found := _ext(patient, p.UKCORE_ETHNIC_CATEGORY):
        ethnic_json = ctx.as_sent(patient, "extension", found[0][0], "valueCodeableConcept")
        if ethnic_json is None and found[0][1].valueCodeableConcept is not None:
            ethnic_json = found[0][1].valueCodeableConcept.model_dump(mode="json", exclude_none=True)

    identifying = {
        "name": elements("name"),
        "birth_date": patient.birthDate.isoformat() if patient.birthDate else None,
        "gender": patient.gender,
        "address": elements("address"),
        "telecom": elements("telecom"),
        "nhs_number": next(
            (i.value for i in patient.identifier or [] if i.system == "https://fhir.nhs.uk/Id/nhs-number"),
            None,
        ),
        # Recorded ethnicity stays with the identifying data: routing uses only the characteristics
        # the survivor chose to share for it.
        "ethnic_category": ethnic_json,
        "language": language,
        "interpreter_required": interpreter,
    }
    return routing, identifying


def _safe_contact(request: ServiceRequest) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for _, ext in _ext(request, p.EXT_SAFE_CONTACT):
        for part, kind in p.SAFE_CONTACT_PARTS.items():
            value = _ext_value(ext, part, kind)
            if value is not None:
                rules[part.replace("-", "_")] = value
    return rules


def render_safe_contact(rules: Mapping[str, Any], instruction: str | None) -> str | None:
    """The safe-contact rules in plain words, most important first, then the clinician's own words.

    A provider reads this before anything else in a handoff: it decides whether and how to make contact.
    """
    lines = []
    if rules.get("do_not_contact"):
        lines.append("DO NOT CONTACT the survivor directly.")
    if rules.get("safe_number"):
        lines.append(f"Safe number: {rules['safe_number']}.")
    if rules.get("safe_times"):
        lines.append(f"Safe times: {rules['safe_times']}.")
    for key, allowed, refused in (
        ("voicemail_allowed", "Voicemail may be left.", "Do not leave voicemail."),
        ("letters_allowed", "Letters may be sent.", "Do not send letters."),
        ("may_name_service", "The service may name itself.", "Do not name the service."),
    ):
        if key in rules:
            lines.append(allowed if rules[key] else refused)
    if instruction:
        lines.append(instruction)
    return " ".join(lines) or None


def _flags(ctx: _Bundle, snomed_flags: Mapping[str, str]) -> set[str]:
    """Abuse types from active safeguarding Flags: Pathways codes, or SNOMED CT concepts mapped to them."""
    found: set[str] = set()
    for index, flag in ctx.by_type.get("Flag", []):
        assert isinstance(flag, Flag)
        if flag.status != "active":
            continue
        for coding in (flag.code.coding if flag.code else None) or []:
            if coding.system == p.SAFEGUARDING_FLAG_SYSTEM:
                value = ctx.code(
                    f"Bundle.entry[{index}].resource.code", coding.code, AbuseType, "safeguarding flag"
                )
                if value is not None:
                    found.add(str(value))
            elif coding.system == p.SNOMED and coding.code in snomed_flags:
                found.add(snomed_flags[coding.code])
    return found


def _dash(ctx: _Bundle) -> tuple[int, RiskBand | None, bool] | None:
    """The DASH result: from the checklist itself (QuestionnaireResponse) or a RiskAssessment."""
    checklists = [
        (i, r)
        for i, r in ctx.by_type.get("QuestionnaireResponse", [])
        if r.questionnaire == p.DASH_QUESTIONNAIRE
    ]
    assessment = ctx.one("RiskAssessment", required=False)
    if not checklists and assessment is None:
        ctx.issues.append(
            Issue(
                "required",
                "The Bundle must hold the DASH checklist (QuestionnaireResponse of "
                f"{p.DASH_QUESTIONNAIRE}) or a RiskAssessment with its score.",
                "Bundle.entry",
            )
        )
        return None
    if len(checklists) > 1:
        ctx.issues.append(Issue("business-rule", "The Bundle must hold one DASH checklist.", "Bundle.entry"))
    counts: list[int] = []
    judgements: list[RiskBand] = []
    escalation = False
    sources: list[tuple[str, Any]] = [(f"Bundle.entry[{i}].resource", r) for i, r in checklists[:1]]
    if assessment is not None:
        sources.append(assessment)
    for path, resource in sources:
        if isinstance(resource, QuestionnaireResponse):
            counts.append(_dash_yes_answers(ctx, path, resource))
        else:
            assert isinstance(resource, RiskAssessment)
            yes = _ext_value(resource, p.EXT_DASH_YES, "Integer")
            if yes is None or not 0 <= yes <= len(p.DASH_ITEMS):
                ctx.issues.append(
                    Issue(
                        "required",
                        "RiskAssessment needs the DASH 'yes' count (0 to 24).",
                        f"{path}.extension",
                    )
                )
            else:
                counts.append(yes)
        judgement = ctx.code(
            f"{path}.extension", _ext_value(resource, p.EXT_JUDGEMENT, "Code"), RiskBand, "risk band"
        )
        if judgement is not None:
            judgements.append(judgement)
        escalation = escalation or bool(_ext_value(resource, p.EXT_ESCALATION, "Boolean"))
    if len(set(counts)) > 1:
        ctx.issues.append(
            Issue(
                "business-rule",
                f"The DASH checklist and the RiskAssessment disagree "
                f"({counts[0]} and {counts[1]} 'yes' answers).",
                "Bundle.entry",
            )
        )
    if not counts:
        return None
    judgement = max(judgements, key=RISK_ORDER.__getitem__) if judgements else None
    return counts[0], judgement, escalation


def _dash_yes_answers(ctx: _Bundle, path: str, checklist: QuestionnaireResponse) -> int:
    """Count "yes" answers; the checklist must hold each of the 24 items once (an item may be unanswered)."""
    seen: dict[str, int] = {}
    yes = 0
    for index, item in enumerate(checklist.item or []):
        if item.linkId not in p.DASH_ITEMS or item.linkId in seen:
            ctx.issues.append(
                Issue(
                    "structure",
                    f"DASH item '{item.linkId}' is unknown or repeated.",
                    f"{path}.item[{index}].linkId",
                )
            )
            continue
        seen[item.linkId] = index
        for answer in item.answer or []:
            if answer.valueBoolean is True or (
                answer.valueCoding is not None and (answer.valueCoding.code or "").lower() in p.DASH_YES_CODES
            ):
                yes += 1
                break
    missing = [link for link in p.DASH_ITEMS if link not in seen]
    if missing:
        ctx.issues.append(
            Issue(
                "required",
                f"The DASH checklist must hold all 24 items; missing: {', '.join(missing)}.",
                f"{path}.item",
            )
        )
    return yes


CONSENT_STATUSES = {
    "active": ConsentStatus.granted,
    "rejected": ConsentStatus.refused,
    "inactive": ConsentStatus.withdrawn,
    "draft": ConsentStatus.not_asked,
    "proposed": ConsentStatus.not_asked,
}


def consent_state(
    consent: Consent,
    *,
    safeguarding_basis: bool,
    issues: list[Issue] | None = None,
    path: str = "Consent",
) -> ConsentState:
    """The consent as routing sees it: status, the kinds of service and organisations it permits, and
    when it ends. Problems are appended to ``issues`` (or raised as a 422 when none is given)."""
    own_issues: list[Issue] = [] if issues is None else issues
    status = CONSENT_STATUSES.get(consent.status)
    if status is None:
        own_issues.append(
            Issue(
                "code-invalid",
                f"Consent.status must be one of {', '.join(CONSENT_STATUSES)}.",
                f"{path}.status",
            )
        )
        status = ConsentStatus.not_asked
    provision = consent.provision
    if status is ConsentStatus.granted and provision is not None and provision.type == "deny":
        status = ConsentStatus.refused
    scopes: set[ConsentScope] = set()
    organisations: set[str] = set()
    expires_at = None
    if provision is not None:
        for index, actor in enumerate(provision.actor or []):
            for coding in actor.role.coding or []:
                if coding.system != p.CONSENT_SCOPE_SYSTEM:
                    continue
                if coding.code in p.CONSENT_SCOPES:
                    scopes.add(ConsentScope(coding.code))
                else:
                    own_issues.append(
                        Issue(
                            "code-invalid",
                            f"Unknown consent scope '{coding.code}'.",
                            f"{path}.provision.actor[{index}].role",
                        )
                    )
            identifier = actor.reference.identifier
            if identifier is not None and identifier.system == p.ORGANISATION_ID_SYSTEM and identifier.value:
                organisations.add(identifier.value)
        if provision.period and provision.period.end:
            end = provision.period.end
            expires_at = end if isinstance(end, datetime) else datetime.combine(_as_date(end), time.max, UTC)
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
    if status is ConsentStatus.granted and not scopes and not organisations:
        own_issues.append(
            Issue(
                "required",
                "Granted consent must name at least one kind of service or organisation in provision.actor.",
                f"{path}.provision.actor",
            )
        )
    if issues is None and own_issues:
        raise FhirError(422, own_issues)
    return ConsentState(
        status=status,
        scopes=tuple(sorted(scopes)),
        expires_at=expires_at,
        organisations=tuple(sorted(organisations)),
        safeguarding_basis=safeguarding_basis,
    )


def parse_consent(body: dict[str, Any]) -> Consent:
    """Validate a JSON object as a FHIR R4 Consent (for a consent update)."""
    if body.get("resourceType") != "Consent":
        raise FhirError(422, [Issue("structure", "The body must be a FHIR Consent.", "resourceType")])
    return _validate(Consent, body)


def _validate(model: type[M], body: dict[str, Any]) -> M:
    """fhir.resources validation, each schema problem an issue at its FHIRPath (never echoing values).

    A resource of the shape referrals have is validated by the fast path, which builds the same model
    (``shared.fhir_fast``); anything else, every invalid resource included, by fhir.resources itself."""
    if (fast := fast_validate(model, body)) is not None:
        return fast
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        root = model.__name__
        raise FhirError(
            422,
            [
                Issue(
                    "structure",
                    err["msg"],
                    fhirpath(root, [part for part in err["loc"] if part != "__root__"]),
                )
                for err in exc.errors(include_input=False, include_url=False)
            ],
        ) from None
    except (TypeError, KeyError, AttributeError, RecursionError) as exc:
        # fhir.resources raises these (not ValidationError) for some malformed shapes, such as a
        # contained resource whose resourceType is not a string; they carry no location.
        raise FhirError(
            422,
            [
                Issue(
                    "structure",
                    f"The {model.__name__} is not valid FHIR R4 ({type(exc).__name__}).",
                    model.__name__,
                )
            ],
        ) from None


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value)
    # FHIR dates may be partial ("1990" or "1990-04"): take the earliest day they allow.
    parts = (text.split("-") + ["01", "01"])[:3]
    return date(int(parts[0]), int(parts[1]), int(parts[2]))
