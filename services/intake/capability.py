"""The CapabilityStatement at ``GET /fhir/metadata``: what an EHR integration team can rely on."""

from __future__ import annotations

from typing import Any

from services.intake.profile import DASH_QUESTIONNAIRE
from services.intake.settings import IntakeSettings
from shared.fhir import CANONICAL


def capability_statement(settings: IntakeSettings) -> dict[str, Any]:
    profile_doc = f"{CANONICAL}/ImplementationGuide/pathways-referral"
    return {
        "resourceType": "CapabilityStatement",
        "url": f"{CANONICAL}/CapabilityStatement/pathways-intake",
        "name": "PathwaysIntake",
        "title": "Pathways intake: domestic abuse and sexual violence referrals from NHS settings",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "Pathways",
        "kind": "instance",
        "software": {"name": "Pathways intake", "version": "0.1.0"},
        "implementation": {"description": "Referral intake for EHR systems; see docs/fhir-referral-profile.md"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "implementationGuide": [profile_doc],
        "rest": [{
            "mode": "server",
            "documentation": (
                "Authenticate with 'Authorization: Bearer <API key>'; each key is bound to the ODS codes it may "
                f"refer for. Bodies above {settings.max_body_bytes} bytes get 413; a client past its rate limit "
                "gets 429 with Retry-After (nothing done). Retries are idempotent by "
                "Bundle.identifier or X-Request-Id; the same key with a different body is a 409."
            ),
            "security": {"service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                                   "code": "Basic", "display": "API key (Bearer)"}]}]},
            "resource": [
                {"type": "Bundle", "interaction": [{"code": "create",
                                                    "documentation": "POST /fhir/Bundle: transaction or collection"}]},
                {"type": "Task", "interaction": [{"code": "read"}, {"code": "search-type"}],
                 "searchParam": [{"name": "based-on", "type": "reference"},
                                 {"name": "_count", "type": "number"}]},
                {"type": "Consent", "interaction": [{"code": "update",
                                                     "documentation": "PUT /fhir/Consent/{task id}"}]},
                {"type": "ServiceRequest", "supportedProfile": [f"{CANONICAL}/StructureDefinition/pathways-referral"]},
                {"type": "QuestionnaireResponse", "documentation": f"The DASH checklist: {DASH_QUESTIONNAIRE}"},
                {"type": "RiskAssessment"}, {"type": "Patient"}, {"type": "Flag"},
            ],
            "operation": [{"name": "process-message", "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
                           "documentation": "POST /fhir/$process-message: a message Bundle, MessageHeader first"}],
        }],
        "messaging": [{"supportedMessage": [{"mode": "receiver",
                                             "definition": "https://fhir.nhs.uk/CodeSystem/message-events-bars#servicerequest-request"}]}],
    }
