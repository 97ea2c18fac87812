"""Console pages for the work queue: escalated cases (with the router's explanation, manual assignment and
notes), dead letters (with replay) and webhook endpoints (with their failure state). Each action calls
the same function as the ops API, so the same state machine, checks and audit trail apply."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Form, HTTPException, Request, Response
from pydantic import ValidationError
from sqlmodel import func, select

from services.notify import ops
from services.notify.console.realm import CONSOLE, OpsWeb
from services.notify.console.remote import call
from services.notify.store import EscalationStatus, WebhookDelivery, WebhookEndpointState
from shared.audit import record
from shared.service import RuntimeDep

router = CONSOLE.router()


@router.get("")
async def home(request: Request, runtime: RuntimeDep, caller: OpsWeb) -> Response:
    escalations = await ops.list_escalations(runtime, caller, EscalationStatus.open)
    endpoints = await ops.disabled_endpoints(runtime, caller)
    dead = await runtime.bus.stream_depth("PATHWAYS_DLQ")
    return CONSOLE.pages.render(request, "console/home.html", {
        "open_escalations": len(escalations), "disabled_endpoints": len(endpoints), "dead_letters": dead})


@router.get("/escalations")
async def escalations(request: Request, runtime: RuntimeDep, caller: OpsWeb) -> Response:
    rows = await ops.list_escalations(runtime, caller)
    return CONSOLE.pages.render(request, "console/escalations.html", {
        "open": [r for r in rows if r.status == EscalationStatus.open],
        "assigned": [r for r in rows if r.status != EscalationStatus.open]})


@router.get("/escalations/{escalation_id}")
async def escalation(escalation_id: UUID, request: Request, runtime: RuntimeDep, caller: OpsWeb) -> Response:
    detail = await ops.read_escalation(escalation_id, runtime, caller)
    # The router's own account of its decisions (its API, as this ops user).
    decision: dict[str, Any] | None = None
    router_error = None
    try:
        decision = await call(request, "router", "GET", f"/cases/{detail.escalation.case_id}/decision",
                              missing_ok=True)
    except HTTPException as exc:  # the queue still works while the router is away
        router_error = str(exc.detail)
    ranked = [s for lane in (decision or {}).get("ranking", {}).values() for s in lane]
    return CONSOLE.pages.render(request, "console/escalation.html", {
        "detail": detail, "decision": decision, "router_error": router_error, "ranked": list(dict.fromkeys(ranked))})


@router.post("/escalations/{escalation_id}/assign")
async def assign(escalation_id: UUID, request: Request, runtime: RuntimeDep, caller: OpsWeb,
                 service_id: Annotated[str, Form(max_length=80)] = "") -> Response:
    try:
        body = ops.AssignRequest(service_id=service_id.strip())
    except ValidationError:
        return CONSOLE.error_page(request, 422, "Choose a service (its directory id: lower-case letters, digits "
                                                "and hyphens). Nothing was changed.")
    offer = await ops.assign_service(escalation_id, body, runtime, caller)
    CONSOLE.flash(request, f"Offered to {offer.service_name}. The provider has been told.")
    return CONSOLE.redirect(f"/console/escalations/{escalation_id}")


@router.post("/escalations/{escalation_id}/notes")
async def note(escalation_id: UUID, request: Request, runtime: RuntimeDep, caller: OpsWeb,
               text: Annotated[str, Form(max_length=2000)] = "") -> Response:
    if not text.strip():
        return CONSOLE.error_page(request, 422, "Write the note before saving it. Nothing was changed.")
    await ops.add_note(escalation_id, ops.NoteRequest(text=text.strip()), runtime, caller)
    CONSOLE.flash(request, "Note added.")
    return CONSOLE.redirect(f"/console/escalations/{escalation_id}")


@router.get("/dead-letters")
async def dead_letters(request: Request, runtime: RuntimeDep, caller: OpsWeb) -> Response:
    letters = await runtime.bus.dead_letters()
    async with runtime.db.transaction() as session:
        record(session, caller, "list-dead-letters", case_id=None, detail=f"{len(letters)} shown")
    return CONSOLE.pages.render(request, "console/dead_letters.html", {"letters": letters})


@router.post("/dead-letters/replay")
async def replay(request: Request, runtime: RuntimeDep, caller: OpsWeb) -> Response:
    # What is there now, not what fails again while this runs.
    letters = await runtime.bus.dead_letters(limit=1000)
    replayed = await runtime.bus.replay_dead_letters(limit=len(letters), up_to=letters[-1].sequence if letters else 0)
    async with runtime.db.transaction() as session:
        record(session, caller, "replay-dead-letters", case_id=None, detail=f"{replayed} replayed")
    CONSOLE.flash(request, f"Replayed {replayed} message(s) to their consumers.")
    return CONSOLE.redirect("/console/dead-letters")


@router.get("/webhooks")
async def webhooks(request: Request, runtime: RuntimeDep, caller: OpsWeb) -> Response:
    async with runtime.db.transaction() as session:
        counts = (await session.exec(select(WebhookDelivery.organisation_id, WebhookDelivery.status, func.count())
                                     .group_by(WebhookDelivery.organisation_id, WebhookDelivery.status))).all()
        latest = (await session.exec(select(WebhookDelivery.organisation_id, func.max(WebhookDelivery.last_attempt_at))
                                     .group_by(WebhookDelivery.organisation_id))).all()
        states = {s.organisation_id: s for s in (await session.exec(select(WebhookEndpointState))).all()}
        errors = {}
        for delivery in (await session.exec(select(WebhookDelivery).where(WebhookDelivery.last_error.is_not(None))  # type: ignore[union-attr]
                                            .order_by(WebhookDelivery.last_attempt_at))).all():
            errors[delivery.organisation_id] = delivery.last_error
        record(session, caller, "list-webhook-endpoints", case_id=None)
    endpoints: dict[str, dict[str, Any]] = {}
    for organisation_id, state, count in counts:
        endpoints.setdefault(organisation_id, {"counts": {}})["counts"][state] = count
    for organisation_id, at in latest:
        endpoints.setdefault(organisation_id, {"counts": {}})["last_attempt_at"] = at
    for organisation_id in states:
        endpoints.setdefault(organisation_id, {"counts": {}})
    rows = [{"organisation_id": org, "counts": info["counts"], "last_attempt_at": info.get("last_attempt_at"),
             "last_error": errors.get(org), "state": states.get(org)} for org, info in sorted(endpoints.items())]
    return CONSOLE.pages.render(request, "console/webhooks.html", {"rows": rows})


@router.post("/webhooks/{organisation_id}/enable")
async def enable(organisation_id: str, request: Request, runtime: RuntimeDep, caller: OpsWeb) -> Response:
    await ops.enable_endpoint(organisation_id, runtime, caller)
    CONSOLE.flash(request, f"Webhook deliveries to {organisation_id} are enabled again.")
    return CONSOLE.redirect("/console/webhooks")
