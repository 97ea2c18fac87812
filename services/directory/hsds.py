"""Open Referral UK / HSDS 3 JSON: export the directory and import it back without loss.

Standard HSDS fields carry what HSDS has words for (organisation, service, status, service areas,
languages, ages, capacity, taxonomy attributes); the rest of the model travels in one
``pathways`` extension object per record, so another HSDS consumer can ignore it and a Pathways
directory loses nothing on a round trip. Webhook secrets and API key hashes are never exported.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.directory.domain import OrganisationCreate, ServiceCreate
from services.directory.store import Organisation, Service
from shared.reference import NATIONAL

HSDS_VERSION = "3.0"
SERVICE_TYPE_TAXONOMY = "pathways-service-type"
COMMUNITY_TAXONOMY = "pathways-by-and-for"
# HSDS service.status values ↔ ours.
TO_HSDS_STATUS = {"active": "active", "inactive": "inactive", "temporarily-closed": "temporarily closed"}
FROM_HSDS_STATUS = {v: k for k, v in TO_HSDS_STATUS.items()} | {"defunct": "inactive"}


class HsdsImportError(ValueError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} record(s) are not valid")
        self.errors = errors


def _extent_type(code: str) -> str:
    if code == NATIONAL:
        return "national"
    return "ons-gss-code" if code[0] in "EWSN" and code[1:].isdigit() else "postcode-district"


def _term(taxonomy: str, code: str) -> dict[str, Any]:
    return {"id": f"{taxonomy}:{code}", "taxonomy_term": {"code": code, "taxonomy": taxonomy, "name": code}}


def export_organisation(org: Organisation) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "email": org.contact_email,
        "website": org.website,
        "phones": [{"number": org.contact_phone}] if org.contact_phone else [],
        "contacts": [{"name": org.contact_name, "email": org.contact_email}] if org.contact_name else [],
        "organization_identifiers": [
            {"identifier_scheme": scheme, "identifier": value}
            for scheme, value in (("GB-CHC", org.charity_number), ("GB-NHS-ODS", org.ods_code))
            if value
        ],
        "attributes": [_term(COMMUNITY_TAXONOMY, c) for c in org.by_and_for],
        "pathways": {
            "by_and_for_other": list(org.by_and_for_other),
            "delivery": org.delivery,
            "webhook_url": org.webhook_url,
            "contact_name": org.contact_name,
            "contact_phone": org.contact_phone,
        },
    }


def export_service(service: Service) -> dict[str, Any]:
    return {
        "id": service.id,
        "organization_id": service.organisation_id,
        "name": service.name,
        "description": service.description,
        "status": TO_HSDS_STATUS.get(service.status, "inactive"),
        "email": service.contact_email,
        "minimum_age": service.min_age,
        "maximum_age": service.max_age,
        "service_areas": [
            {"id": f"{service.id}:{code}", "name": code, "extent_type": _extent_type(code)} for code in service.coverage
        ],
        "languages": [{"id": f"{service.id}:{code}", "code": code} for code in service.languages],
        "service_capacities": (
            [{"id": f"{service.id}:open-offers", "unit": {"name": "open offers"}, "maximum": service.max_open_offers}]
            if service.max_open_offers is not None
            else []
        ),
        "attributes": [_term(SERVICE_TYPE_TAXONOMY, service.service_type)]
        + [_term(COMMUNITY_TAXONOMY, c) for c in service.by_and_for],
        "pathways": {
            "coverage_level": service.coverage_level,
            "genders": list(service.genders),
            "accepts_nrpf": service.accepts_nrpf,
            "risk_levels": list(service.risk_levels),
            "bsl": service.bsl,
            "accessibility": list(service.accessibility),
            "abuse_types": list(service.abuse_types),
            "worker_genders": list(service.worker_genders),
            "accepting": service.accepting,
            "wait_band": service.wait_band,
            "response_sla_hours": dict(service.response_sla_hours),
            "contact_name": service.contact_name,
            "contact_phone": service.contact_phone,
        },
    }


def export_document(organisations: list[Organisation], services: list[Service], *,
                    contacts: bool = True) -> dict[str, Any]:
    """The directory as HSDS; ``contacts=False`` (an unauthenticated caller) leaves out contact details
    and webhook URLs (issue 13)."""
    by_org: dict[str, list[dict[str, Any]]] = {}
    for service in services:
        by_org.setdefault(service.organisation_id, []).append(
            export_service(service) if contacts else _without_contacts(export_service(service)))
    return {
        "hsds_version": HSDS_VERSION,
        "profile": "https://openreferraluk.org",
        "organizations": [{**(export_organisation(o) if contacts else _without_contacts(export_organisation(o))),
                           "services": by_org.get(o.id, [])} for o in organisations],
    }


def _without_contacts(record: dict[str, Any]) -> dict[str, Any]:
    extension = {**record["pathways"], **{k: None for k in ("webhook_url", "contact_name", "contact_phone")
                                          if k in record["pathways"]}}
    emptied = {k: [] for k in ("phones", "contacts") if k in record}
    return {**record, "email": None, **emptied, "pathways": extension}


def _terms(record: dict[str, Any], taxonomy: str) -> list[str]:
    return [
        a["taxonomy_term"]["code"]
        for a in record.get("attributes") or []
        if (a.get("taxonomy_term") or {}).get("taxonomy") == taxonomy
    ]


def _identifier(record: dict[str, Any], scheme: str) -> str | None:
    return next(
        (i["identifier"] for i in record.get("organization_identifiers") or [] if i.get("identifier_scheme") == scheme),
        None,
    )


def import_document(
    document: dict[str, Any], known_secrets: dict[str, list[str]] | None = None
) -> tuple[list[OrganisationCreate], list[ServiceCreate]]:
    """Validate every record of an HSDS document; raise ``HsdsImportError`` listing all bad records.

    ``known_secrets`` are the webhook signing secrets this directory already holds, by organisation:
    secrets never travel in HSDS, so a webhook provider keeps webhook delivery only if it has them.
    """
    known_secrets = known_secrets or {}
    organisations: list[OrganisationCreate] = []
    services: list[ServiceCreate] = []
    errors: list[dict[str, Any]] = []
    for o in document.get("organizations") or []:
        try:
            organisations.append(_organisation(o, known_secrets.get(o.get("id") or "", [])))
        except ValidationError as exc:
            errors.append({"organization": o.get("id"), "errors": _errors(exc)})
        for s in o.get("services") or []:
            try:
                services.append(_service(s, o.get("id")))
            except ValidationError as exc:
                errors.append({"service": s.get("id"), "errors": _errors(exc)})
    if errors:
        raise HsdsImportError(errors)
    return organisations, services


def _organisation(o: dict[str, Any], secrets: list[str]) -> OrganisationCreate:
    ext = o.get("pathways") or {}
    webhook = ext.get("delivery") == "webhook" and bool(secrets)
    return OrganisationCreate.model_validate(
        {
            "id": o.get("id"),
            "name": o.get("name"),
            "charity_number": _identifier(o, "GB-CHC"),
            "ods_code": _identifier(o, "GB-NHS-ODS"),
            "by_and_for": _terms(o, COMMUNITY_TAXONOMY),
            "by_and_for_other": ext.get("by_and_for_other") or [],
            # Without a known secret a webhook provider is imported as polling (URL kept) until ops
            # set its secret: webhook delivery needs one.
            "delivery": "webhook" if webhook else "poll",
            "signing_secrets": secrets if webhook else [],
            "webhook_url": ext.get("webhook_url"),
            "contact_name": ext.get("contact_name"),
            "contact_email": o.get("email"),
            "contact_phone": ext.get("contact_phone"),
            "website": o.get("website"),
        }
    )


def _service(s: dict[str, Any], organisation_id: str | None) -> ServiceCreate:
    ext = s.get("pathways") or {}
    types = _terms(s, SERVICE_TYPE_TAXONOMY)
    capacity = next((c for c in s.get("service_capacities") or [] if (c.get("unit") or {}).get("name") == "open offers"), None)
    return ServiceCreate.model_validate(
        {
            "id": s.get("id"),
            "organisation_id": s.get("organization_id") or organisation_id,
            "name": s.get("name"),
            "description": s.get("description"),
            "service_type": types[0] if types else None,
            "by_and_for": _terms(s, COMMUNITY_TAXONOMY),
            "coverage": [a.get("name") for a in s.get("service_areas") or []],
            "coverage_level": ext.get("coverage_level", "local"),
            "genders": ext.get("genders") or [],
            "min_age": s.get("minimum_age"),
            "max_age": s.get("maximum_age"),
            "accepts_nrpf": ext.get("accepts_nrpf", True),
            "risk_levels": ext.get("risk_levels") or [],
            "languages": [lang.get("code") for lang in s.get("languages") or []],
            "bsl": ext.get("bsl", False),
            "accessibility": ext.get("accessibility") or [],
            "abuse_types": ext.get("abuse_types") or [],
            "worker_genders": ext.get("worker_genders") or [],
            "accepting": ext.get("accepting", True),
            "max_open_offers": capacity.get("maximum") if capacity else None,
            "wait_band": ext.get("wait_band"),
            "response_sla_hours": ext.get("response_sla_hours") or {},
            "status": FROM_HSDS_STATUS.get(s.get("status") or "active", "inactive"),
            "contact_name": ext.get("contact_name"),
            "contact_email": s.get("email"),
            "contact_phone": ext.get("contact_phone"),
        }
    )


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    # Never echo the submitted values back.
    return [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
