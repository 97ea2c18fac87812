"""The ops API: escalated cases (list, read the decision and history, assign a service by hand, note)
and disabled webhook endpoints. Every action, reads included, is audited."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notify.api import OfferPublic
from services.notify.domain import TaskView
from services.notify.offers import announce_task, make_offer
from services.notify.settings import NotifySettings
from services.notify.store import (
    ESCALATION_STATES,
    CaseConsent,
    Escalation,
    EscalationNote,
    EscalationStatus,
    Offer,
    RoutingRecord,
    WebhookEndpointState,
)
from shared.audit import AuditRecord, record
from shared.auth import Caller, CallerKind, OpsCaller
from shared.directory_contract import DirectoryId
from shared.events import CaseSummary, PurgeRule, RoutedService, utcnow
from shared.openapi import errors
from shared.service import RuntimeDep

router = APIRouter(prefix="/ops", tags=["ops"])


class EscalationPublic(BaseModel):
    id: UUID
    case_id: UUID
    reason: str
    status: str
    created_at: datetime
    updated_at: datetime
    assigned_service_id: str | None
    assigned_by: str | None


class OfferForOps(OfferPublic):
    status_text: str | None
    assigned_by: str | None
    handoff_released_at: datetime | None


class NotePublic(BaseModel):
    at: datetime
    author: str
    text: str


class HistoryEntry(BaseModel):
    at: datetime
    actor: str
    action: str
    detail: str


class EscalationDetail(BaseModel):
    escalation: EscalationPublic
    summary: dict[str, Any] | None
    consent_status: str | None
    closed_reason: str | None
    decisions: list[dict[str, Any]]
    offers: list[OfferForOps]
    notes: list[NotePublic]
    history: list[HistoryEntry]


class AssignRequest(BaseModel):
    service_id: DirectoryId


class NoteRequest(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


async def _escalation(session: AsyncSession, escalation_id: UUID) -> Escalation:
    escalation = await session.get(Escalation, escalation_id)
    if escalation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No escalation with id '{escalation_id}'.")
    return escalation


@router.get("/escalations", response_model=list[EscalationPublic], summary="Escalated cases, oldest first")
async def list_escalations(
    runtime: RuntimeDep, caller: OpsCaller,
    escalation_status: Annotated[EscalationStatus | None, Query(alias="status")] = None,
) -> list[EscalationPublic]:
    async with runtime.db.transaction() as session:
        statement = select(Escalation).order_by(col(Escalation.created_at), col(Escalation.id))
        if escalation_status is not None:
            statement = statement.where(Escalation.status == escalation_status)
        rows = (await session.exec(statement)).all()
        record(session, caller, "list-escalations", case_id=None, detail=f"{len(rows)} shown")
    return [EscalationPublic.model_validate(r, from_attributes=True) for r in rows]


@router.get("/escalations/{escalation_id}", response_model=EscalationDetail,
            summary="An escalated case: why, the routing decisions, offers, notes and audit history",
            responses=errors(404))
async def read_escalation(escalation_id: UUID, runtime: RuntimeDep, caller: OpsCaller) -> EscalationDetail:
    async with runtime.db.transaction() as session:
        escalation = await _escalation(session, escalation_id)
        case_id = escalation.case_id
        case = await session.get(CaseConsent, case_id)
        decisions = (await session.exec(select(RoutingRecord).where(RoutingRecord.case_id == case_id)
                                        .order_by(col(RoutingRecord.received_at)))).all()
        offers = (await session.exec(select(Offer).where(Offer.case_id == case_id)
                                     .order_by(col(Offer.created_at), col(Offer.id)))).all()
        notes = (await session.exec(select(EscalationNote).where(EscalationNote.escalation_id == escalation.id)
                                    .order_by(col(EscalationNote.at)))).all()
        # Read before this read is recorded, so the history shows what happened before it.
        history = (await session.exec(select(AuditRecord).where(AuditRecord.case_id == case_id)
                                      .order_by(col(AuditRecord.at)))).all()
        record(session, caller, "read-escalation", case_id=case_id, detail=f"escalation {escalation.id}")
        return EscalationDetail(
            escalation=EscalationPublic.model_validate(escalation, from_attributes=True),
            summary=case.summary if case else None,
            consent_status=case.consent.get("status") if case else None,
            closed_reason=case.closed_reason if case else None,
            decisions=[{"decision_id": str(d.decision_id), "received_at": d.received_at.isoformat(),
                        "offer_to": d.offer_to} for d in decisions],
            offers=[OfferForOps(**OfferPublic.of(o).model_dump(), status_text=o.status_text,
                                assigned_by=o.assigned_by, handoff_released_at=o.handoff_released_at)
                    for o in offers],
            notes=[NotePublic(at=n.at, author=n.author, text=n.text) for n in notes],
            history=[HistoryEntry(at=h.at, actor=f"{h.actor_kind}:{h.actor_id}", action=h.action, detail=h.detail)
                     for h in history],
        )


@router.post("/escalations/{escalation_id}/assign", response_model=OfferForOps, status_code=201,
             summary="Offer the case to a named service by hand", responses=errors(404, 409))
async def assign_service(escalation_id: UUID, body: AssignRequest, runtime: RuntimeDep,
                         caller: OpsCaller) -> OfferForOps:
    settings: NotifySettings = runtime.settings  # type: ignore[assignment]
    # Validated as a directory id, and escaped all the same: an id is a path segment, never a path.
    response = await runtime.http.get(f"{settings.directory_url}/services/{quote(body.service_id, safe='')}")
    if response.status_code == 404:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"The directory has no service '{body.service_id}'.")
    if response.status_code != 200:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="The directory cannot be read right now.")
    found = response.json()
    service = RoutedService(
        service_id=found["id"], organisation_id=found["organisation_id"], service_type=found["service_type"],
        name=found["name"], reasons=(f"assigned by hand by {caller.id}",),
        by_and_for=tuple(sorted(set(found.get("by_and_for", [])) | set(found.get("organisation_by_and_for", [])))),
    )
    async with runtime.db.transaction() as session:
        escalation = await _escalation(session, escalation_id)
        case = await session.get(CaseConsent, escalation.case_id)
        if case is None or case.summary is None:
            raise HTTPException(status.HTTP_409_CONFLICT, detail="Notify has not received this referral yet.")
        if case.closed_reason is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"The case is closed ({case.closed_reason}).")
        now = utcnow()
        offer = await make_offer(session, settings, case_id=escalation.case_id, service=service,
                                 summary=CaseSummary.model_validate(case.summary), decision_id=None, now=now,
                                 assigned_by=caller.id)
        if offer is None:
            raise HTTPException(status.HTTP_409_CONFLICT, detail="That service already holds an open offer for the case.")
        await ESCALATION_STATES.advance(session, escalation, EscalationStatus.assigned,
                                        assigned_service_id=service.service_id, assigned_by=caller.id, updated_at=now)
        announce_task(session, escalation.case_id, TaskView.offered(service.name), now=now)
        record(session, caller, "assign-service", case_id=escalation.case_id,
               detail=f"escalation {escalation.id}; service {service.service_id}; offer {offer.id}")
        return OfferForOps(**OfferPublic.of(offer).model_dump(), status_text=None, assigned_by=caller.id,
                           handoff_released_at=None)


@router.post("/escalations/{escalation_id}/notes", response_model=NotePublic, status_code=201,
             summary="Add a note to an escalated case", responses=errors(404))
async def add_note(escalation_id: UUID, body: NoteRequest, runtime: RuntimeDep, caller: OpsCaller) -> NotePublic:
    async with runtime.db.transaction() as session:
        escalation = await _escalation(session, escalation_id)
        note = EscalationNote(escalation_id=escalation.id, author=caller.id, text=body.text)
        session.add(note)
        escalation.updated_at = note.at
        session.add(escalation)
        # The note's text is not copied into the audit trail: the trail records that it was written.
        record(session, caller, "add-note", case_id=escalation.case_id, detail=f"escalation {escalation.id}")
    return NotePublic(at=note.at, author=note.author, text=note.text)


NOTIFY = Caller(CallerKind.service, "notify")
PURGED_NOTE = ""


async def purge_notes(session: AsyncSession, case_id: UUID, *, rule: PurgeRule) -> int:
    """Empty ops' notes on the case's escalations once intake purged its identifying data (retention):
    notes are free text, and ops may have written who the survivor is. That a note was written, by whom
    and when stays (so does the audit trail); its text goes. Returns how many were emptied."""
    escalations = select(Escalation.id).where(Escalation.case_id == case_id)
    emptied = await session.exec(  # type: ignore[call-overload]
        update(EscalationNote)
        .where(col(EscalationNote.escalation_id).in_(escalations), EscalationNote.text != PURGED_NOTE)
        .values(text=PURGED_NOTE)
    )
    if emptied.rowcount:
        record(session, NOTIFY, "purge-escalation-notes", case_id=case_id, detail=f"{emptied.rowcount} note(s)",
               reason=f"identifying data purged: {rule.value}")
    return int(emptied.rowcount)


class EndpointPublic(BaseModel):
    organisation_id: str
    disabled_at: datetime | None
    disabled_reason: str | None


@router.get("/webhook-endpoints", response_model=list[EndpointPublic], summary="Disabled webhook endpoints")
async def disabled_endpoints(runtime: RuntimeDep, caller: OpsCaller) -> list[EndpointPublic]:
    async with runtime.db.transaction() as session:
        rows = (await session.exec(select(WebhookEndpointState)
                                   .where(col(WebhookEndpointState.disabled_at).is_not(None)))).all()
        record(session, caller, "list-webhook-endpoints", case_id=None)
    return [EndpointPublic.model_validate(r, from_attributes=True) for r in rows]


@router.post("/webhook-endpoints/{organisation_id}/enable", response_model=EndpointPublic,
             summary="Enable a provider's endpoint again once it is fixed", responses=errors(404))
async def enable_endpoint(organisation_id: str, runtime: RuntimeDep, caller: OpsCaller) -> EndpointPublic:
    async with runtime.db.transaction() as session:
        state = await session.get(WebhookEndpointState, organisation_id)
        if state is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No endpoint state for '{organisation_id}'.")
        state.disabled_at = None
        state.disabled_reason = None
        state.updated_at = utcnow()
        session.add(state)
        record(session, caller, "enable-webhook-endpoint", case_id=None, detail=organisation_id)
    return EndpointPublic.model_validate(state, from_attributes=True)
