"""FHIR helpers: the project's canonical URLs and OperationOutcome errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.jsontext import JsonResponse

CANONICAL = "https://pathways.example.org/fhir"
FHIR_JSON = "application/fhir+json"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
TASK_BUSINESS_STATUS_SYSTEM = f"{CANONICAL}/CodeSystem/task-business-status"


class FhirResponse(JsonResponse):
    """A FHIR resource: documented and sent as application/fhir+json."""

    media_type = FHIR_JSON


def remember_fhir_model_lookups() -> None:
    """Make fhir.resources validation a third cheaper (issue 9's profile: intake's largest CPU cost).

    fhir_core finds the model class for every resource in a Bundle (``entry.resource``, contained
    resources) by importing it from its dotted name each time, taking the import system's module lock
    on every call. The name → class mapping never changes in a running process: it is remembered.
    Guarded, so a fhir_core that no longer looks models up this way is left as it is.
    """
    import functools

    import fhir_core.types as fhir_types

    lookup = getattr(fhir_types, "import_string", None)
    if lookup is None or hasattr(lookup, "cache_info"):
        return
    fhir_types.import_string = functools.lru_cache(maxsize=4096)(lookup)


def extension_url(name: str) -> str:
    return f"{CANONICAL}/StructureDefinition/{name}"


def code_system(name: str) -> str:
    return f"{CANONICAL}/CodeSystem/{name}"


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: what is wrong, where (FHIRPath), how bad."""

    code: str
    diagnostics: str
    expression: str | None = None
    severity: str = "error"

    def as_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


class FhirError(Exception):
    """Raised anywhere in a FHIR request: becomes an OperationOutcome with this status."""

    def __init__(self, status: int, issues: Sequence[Issue], headers: dict[str, str] | None = None) -> None:
        super().__init__("; ".join(i.diagnostics for i in issues))
        self.status = status
        self.issues = list(issues)
        self.headers = headers or {}


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in issues]}


def outcome_response(status: int, issues: Sequence[Issue], headers: dict[str, str] | None = None) -> FhirResponse:
    return FhirResponse(operation_outcome(issues), status_code=status, headers=headers)


def fhirpath(root: str, loc: Sequence[str | int]) -> str:
    """A pydantic error location as a FHIRPath expression: ("entry", 0, "resource") → Bundle.entry[0].resource."""
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
