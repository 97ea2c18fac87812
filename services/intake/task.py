"""The FHIR Task a referrer reads to follow its referral."""

from __future__ import annotations

import re
from typing import Any

from services.intake.store import Referral
from shared.events import TaskStatus
from shared.fhir import TASK_BUSINESS_STATUS_SYSTEM, code_system
from shared.state_machine import StateMachine

OUTCOME_SYSTEM = code_system("referral-outcome")
OUTCOME_TYPE = code_system("task-output-type")
STATUS_REASON_SYSTEM = code_system("task-status-reason")

# The FHIR Task state machine, as far as Pathways uses it: requested → accepted → in-progress →
# completed, or rejected / cancelled. ``rejected`` is Pathways' final "no offer will be made" (consent
# refused, nothing eligible: docs/fhir-referral-profile.md), with a coded statusReason. A Task may stay where it is while its business status changes
# (offered, declined by one service and offered to the next, another outcome); it never goes back.
TASK_STATES = StateMachine.of(
    "referral",
    "task_status",
    {
        TaskStatus.requested: (TaskStatus.requested, TaskStatus.accepted, TaskStatus.rejected, TaskStatus.cancelled),
        TaskStatus.accepted: (TaskStatus.accepted, TaskStatus.in_progress, TaskStatus.completed, TaskStatus.cancelled),
        TaskStatus.in_progress: (TaskStatus.in_progress, TaskStatus.completed, TaskStatus.cancelled),
        TaskStatus.completed: (),
        TaskStatus.rejected: (),
        TaskStatus.cancelled: (),
    },
    self_moves=(TaskStatus.requested, TaskStatus.accepted, TaskStatus.in_progress),
)


def business_status_code(referral: Referral) -> str:
    """The coded business status: as sent with ``case.status``, else derived from its words (older events)."""
    if referral.business_status_code:
        return referral.business_status_code
    return re.sub(r"[^a-z0-9]+", "-", referral.business_status.split(";")[0].lower()).strip("-") or "received"


def task_resource(referral: Referral) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": str(referral.id),
        "meta": {"lastUpdated": referral.last_updated.isoformat()},
        "status": referral.task_status,
        "intent": "order",
        "businessStatus": {
            "coding": [{"system": TASK_BUSINESS_STATUS_SYSTEM, "code": business_status_code(referral)}],
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
    if referral.status_reason or referral.status_reason_code:
        reason: dict[str, Any] = {}
        if referral.status_reason_code:
            reason["coding"] = [{"system": STATUS_REASON_SYSTEM, "code": referral.status_reason_code}]
        if referral.status_reason:
            reason["text"] = referral.status_reason
        task["statusReason"] = reason
    if referral.routing_summary:
        # The routing decision as the referrer may see it (kinds of service, by-and-for, helplines, escalation).
        task["note"] = [{"text": referral.routing_summary}]
    if referral.task_outputs:
        # One output per coded outcome the providers reported, in the order they happened.
        task["output"] = [
            {"type": {"coding": [{"system": OUTCOME_TYPE, "code": "outcome"}]},
             "valueCodeableConcept": {"coding": [{"system": OUTCOME_SYSTEM, "code": code}],
                                      "text": code.replace("-", " ")}}
            for code in referral.task_outputs
        ]
    return task
