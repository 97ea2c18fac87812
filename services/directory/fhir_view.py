"""Services as FHIR ``HealthcareService`` resources (R5, as ``fhir.resources`` validates) for NHS
consumers. Read-only: the directory's own model stays the source of truth."""

from __future__ import annotations

from typing import Any

from services.directory.store import Organisation, Service
from shared.fhir import ODS_SYSTEM, code_system, extension_url
from shared.reference import NATIONAL

BCP47 = "urn:ietf:bcp:47"


def _concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding], "text": display or code}


def healthcare_service(service: Service, organisation: Organisation, *, contacts: bool = True) -> dict[str, Any]:
    provided_by: dict[str, Any] = {"display": organisation.name}
    if organisation.ods_code:
        provided_by["identifier"] = {"system": ODS_SYSTEM, "value": organisation.ods_code}
    resource: dict[str, Any] = {
        "resourceType": "HealthcareService",
        "id": service.id,
        "active": service.status == "active",
        "providedBy": provided_by,
        "type": [_concept(code_system("service-type"), service.service_type)],
        "name": service.name,
        # Coverage areas are ONS codes or postcode districts, not Location resources: display-only references.
        "coverageArea": [{"display": "England (national)" if c == NATIONAL else c} for c in service.coverage],
        "characteristic": [
            _concept(code_system("by-and-for-community"), c)
            for c in sorted(set(service.by_and_for) | set(organisation.by_and_for))
        ]
        + ([_concept(code_system("accessibility"), "bsl", "British Sign Language")] if service.bsl else []),
        "communication": [_concept(BCP47, lang) for lang in service.languages],
        "eligibility": _eligibility(service),
        "referralMethod": [_concept("http://terminology.hl7.org/CodeSystem/service-referral-method", "elec",
                                    "Secure Messaging")],
        "extension": [
            {"url": extension_url("accepting-referrals"), "valueBoolean": service.accepting},
            {"url": extension_url("service-status"), "valueCode": service.status},
        ],
    }
    if service.description:
        resource["comment"] = service.description
    if contacts and (service.contact_email or service.contact_phone):
        telecom = [{"system": "email", "value": service.contact_email}] if service.contact_email else []
        telecom += [{"system": "phone", "value": service.contact_phone}] if service.contact_phone else []
        resource["contact"] = [{"name": [{"text": service.contact_name}] if service.contact_name else [],
                                "telecom": telecom}]
    return {k: v for k, v in resource.items() if v != []}


def _eligibility(service: Service) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    if service.genders:
        rules.append({"code": {"text": "gender"}, "comment": ", ".join(service.genders)})
    if service.min_age is not None or service.max_age is not None:
        low = service.min_age if service.min_age is not None else 0
        rules.append({"code": {"text": "age"}, "comment": f"{low}–{service.max_age}" if service.max_age else f"{low}+"})
    if service.risk_levels:
        rules.append({"code": {"text": "risk level"}, "comment": ", ".join(service.risk_levels)})
    if service.abuse_types:
        rules.append({"code": {"text": "abuse type"}, "comment": ", ".join(service.abuse_types)})
    rules.append({"code": {"text": "no recourse to public funds"},
                  "comment": "accepted" if service.accepts_nrpf else "not accepted"})
    return rules


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"fullUrl": f"HealthcareService/{r['id']}", "resource": r, "search": {"mode": "match"}}
                  for r in resources],
    }
