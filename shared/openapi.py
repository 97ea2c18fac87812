"""Complete OpenAPI documents: every answer a route can give, with its media type and schema.

Routes declare the errors particular to them (``errors(404, 409)``); what every route of a kind can
answer is added here: 401 and 403 where a credential is required, the validation error where there is
input (422 problem+json, or 400 OperationOutcome on a FHIR API), 413 where there is a body, 429 on
every route but the probes and internal calls (``shared.protection``), 503 everywhere (a dependency
away, or the service saturated). Error bodies are RFC 9457 problem+json, except on a FHIR API, where they are
OperationOutcome resources in application/fhir+json.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from shared.admission import PROBE_PATHS
from shared.fhir import FHIR_JSON
from shared.problems import PROBLEM_JSON

DESCRIPTIONS = {
    400: "The request is malformed (a bad search parameter, cursor or body)",
    401: "No credential, or one Pathways does not know (send `Authorization: Bearer <api key>` or `X-API-Key`)",
    403: "The credential is valid but not for this (another role, another organisation, outside consent)",
    404: "No such resource, or not one this caller may see",
    409: "Conflicts with the current state (an illegal state transition, a duplicate, a retried key reused)",
    410: "Gone: withdrawn, the survivor withdrew consent; do not make contact",
    413: "The body is larger than the service accepts (`<SERVICE>_MAX_BODY_BYTES`); nothing was done",
    415: "Unsupported content type",
    422: "The request does not match the API's schema or rules; nothing was changed",
    429: "Too many requests from this caller (or refused credentials from this address); nothing was done: "
         "retry after Retry-After",
    503: "Unavailable (a dependency is away or the service is saturated); retry later, honouring Retry-After",
}

# A response entry marked so keeps the content its route declares (e.g. RFC 6749 token errors, which are
# application/json by that standard) instead of problem+json.
OWN_CONTENT = "x-own-content"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"}, "type": {"type": "string"}}}},
    },
    "additionalProperties": True,
}


def _resource(name: str, description: str, **properties: Any) -> dict[str, Any]:
    return {
        "title": name,
        "description": description,
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": [name]}, "id": {"type": "string"}, **properties},
        "additionalProperties": True,
    }


FHIR_SCHEMAS: dict[str, dict[str, Any]] = {
    "OperationOutcome": _resource(
        "OperationOutcome", "FHIR R4 OperationOutcome: what went wrong, where (FHIRPath) and how badly.",
        issue={"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["severity", "code"],
            "properties": {"severity": {"type": "string", "enum": ["fatal", "error", "warning", "information"]},
                           "code": {"type": "string"}, "diagnostics": {"type": "string"},
                           "expression": {"type": "array", "items": {"type": "string"}}}}},
    ),
    "Task": _resource(
        "Task", "FHIR R4 Task: the state of a referral as its referrer sees it.",
        status={"type": "string", "enum": ["requested", "accepted", "rejected", "in-progress", "completed",
                                           "cancelled"]},
        intent={"type": "string"}, businessStatus={"type": "object"},
    ),
    "Bundle": _resource("Bundle", "FHIR R4 Bundle.", type={"type": "string"},
                        entry={"type": "array", "items": {"type": "object"}}),
    "CapabilityStatement": _resource("CapabilityStatement", "FHIR R4 CapabilityStatement."),
    "Consent": _resource("Consent", "FHIR R4 Consent."),
    "Subscription": _resource("Subscription", "FHIR R4 Subscription (Backport IG)."),
    "HealthcareService": _resource("HealthcareService", "FHIR R4 HealthcareService."),
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers particular to a route, for its ``responses=``; the body is filled in per API."""
    return {code: {"description": DESCRIPTIONS.get(code, HTTPStatus(code).phrase)} for code in codes}


def fhir_resource(name: str, status: int = 200, description: str = "The resource") -> dict[int | str, dict[str, Any]]:
    """A FHIR resource answer (``FHIR_SCHEMAS``), for a route's ``responses=``."""
    return {status: {"description": description,
                     "content": {FHIR_JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}}}}


def _error_content(fhir: bool) -> dict[str, Any]:
    if fhir:
        return {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}
    return {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def complete(document: dict[str, Any], *, fhir_prefix: str | None = None) -> dict[str, Any]:
    """Add the answers every route of a kind can give, and the media types and schemas of all errors."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    for name, schema in FHIR_SCHEMAS.items():
        schemas.setdefault(name, schema)
    for path, operations in document.get("paths", {}).items():
        fhir = fhir_prefix is not None and path.startswith(fhir_prefix)
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            has_input = bool(operation.get("parameters") or operation.get("requestBody"))
            validation = responses.pop("422", None)
            explicit_422 = validation is not None and "HTTPValidationError" not in str(validation)
            wanted = {int(code) for code in responses if int(code) >= 400}
            if explicit_422:
                wanted.add(422)
            if has_input or validation is not None:
                wanted.add(400 if fhir else 422)
            if operation.get("requestBody"):
                wanted |= {400, 413}  # a body that is not JSON at all; one over the size limit
            if path not in PROBE_PATHS and not path.startswith("/internal/"):
                wanted.add(429)  # shared.protection: per-caller rate limits
            if operation.get("security") and {} not in operation["security"]:  # {}: the credential is optional
                wanted |= {401, 403}
            wanted.add(503)
            for code in sorted(wanted):
                entry = responses.setdefault(str(code), {})
                entry.setdefault("description", DESCRIPTIONS.get(code, HTTPStatus(code).phrase))
                if entry.get(OWN_CONTENT):
                    continue  # an error format a standard fixes (OAuth2's token errors)
                entry["content"] = _error_content(fhir)
                if code in (429, 503):
                    entry["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying",
                                                        "schema": {"type": "string"}}}
            for code, entry in responses.items():
                content = entry.get("content", {})
                # A FHIR answer is documented in its own media type only.
                if int(code) < 400 and FHIR_JSON in content:
                    content.pop("application/json", None)
            operation["responses"] = dict(sorted(responses.items()))
    return document


def install_openapi(app: FastAPI, *, fhir_prefix: str | None = None) -> None:
    """Serve the completed document at /openapi.json (built once, like FastAPI's own)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes, tags=app.openapi_tags, servers=app.servers)
            app.openapi_schema = complete(document, fhir_prefix=fhir_prefix)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
