"""The FHIR Task a referrer reads to follow its referral."""

from __future__ import annotations

from typing import Any

from services.intake.store import Referral
from shared.fhir import TASK_BUSINESS_STATUS_SYSTEM


def task_resource(referral: Referral) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": str(referral.id),
        "meta": {"lastUpdated": referral.last_updated.isoformat()},
        "status": referral.task_status,
        "intent": "order",
        "businessStatus": {
            "coding": [{"system": TASK_BUSINESS_STATUS_SYSTEM, "code": referral.business_status.split(" ")[0]}],
            "text": referral.business_status,
        },
        "authoredOn": referral.created_at.isoformat(),
        "lastModified": referral.last_updated.isoformat(),
        "requester": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                     "value": referral.referrer_ods}},
    }
    # The referral the Task fulfils: what `GET /fhir/Task?based-on=` searches.
    based_on: dict[str, Any] = {"reference": f"ServiceRequest/{referral.id}"}
    if referral.service_request_identifier:
        system, _, value = referral.service_request_identifier.partition("|")
        based_on["identifier"] = {"system": system, "value": value} if system else {"value": value}
    task["basedOn"] = [based_on]
    if referral.bundle_identifier:
        system, _, value = referral.bundle_identifier.partition("|")
        task["groupIdentifier"] = {"system": system, "value": value} if system else {"value": value}
    if referral.status_reason:
        task["statusReason"] = {"text": referral.status_reason}
    return task
