"""Notify's tables: what it knows of each case, the offers made to providers, their outcomes, webhook
deliveries, and the ops queue of escalated cases."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple
from uuid import UUID, uuid4

from sqlalchemy import JSON, Column, Table, Text, UniqueConstraint
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel, func, select

from services.notify.domain import OfferStatus
from shared.audit import AuditChain, AuditRecord
from shared.db import Database, utc_field
from shared.events import utcnow
from shared.metrics import OFFERS
from shared.state_machine import StateMachine
from shared.telemetry import stored_context

OPEN_OFFER_STATUSES = (OfferStatus.offered, OfferStatus.accepted)


class CaseConsent(SQLModel, table=True):
    """What notify knows of a case: its summary and the consent it checks at the moment of each release."""

    __tablename__ = "case_consent"

    case_id: UUID = Field(primary_key=True)
    consent: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # Intake's version of the consent above: only a higher version replaces it (compare-and-set), never
    # a later timestamp, because a re-route can carry the router's older copy.
    consent_version: int = Field(default=1)
    # When the consent above was stated (for people reading the record).
    consent_at: datetime = utc_field(default_factory=utcnow)
    summary: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # When intake received the referral (``referral.received``), for the reports' time to acceptance.
    referred_at: datetime | None = utc_field(default=None)
    # Set when the referral was cancelled: no new offers are made after that.
    closed_reason: str | None = Field(default=None, max_length=60)
    updated_at: datetime = utc_field(default_factory=utcnow)


class CaseState(NamedTuple):
    """What the consumers decide on for a case: the newest consent notify knows and whether it is closed."""

    consent: dict[str, Any]
    consent_version: int
    closed_reason: str | None


class RoutingRecord(SQLModel, table=True):
    """A routing decision as notify received it (``case.routed``), for ops to read."""

    __tablename__ = "routing_record"

    decision_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    offer_to: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = utc_field(default_factory=utcnow)


class Offer(SQLModel, table=True):
    id: UUID = Field(default_factory=uuid4, primary_key=True)
    case_id: UUID = Field(index=True)
    decision_id: UUID | None = None
    service_id: str = Field(max_length=80)
    service_name: str = Field(max_length=200)
    service_type: str = Field(max_length=40)
    organisation_id: str = Field(max_length=80, index=True)
    by_and_for: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=OfferStatus.offered, max_length=20, index=True)
    # The non-identifying summary and why this service was chosen.
    summary: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = utc_field(default_factory=utcnow)
    respond_by: datetime = utc_field(index=True)
    last_updated: datetime = utc_field(default_factory=utcnow, index=True)
    # Why it was declined (coded) and, for "other", the provider's words; why it was withdrawn.
    status_reason: str | None = Field(default=None, max_length=60)
    status_text: str | None = Field(default=None, max_length=500)
    # First release of the handoff: the provider now holds identifying data.
    handoff_released_at: datetime | None = utc_field(default=None)
    # Set when a provider that holds the handoff must stop (consent withdrawn, referral cancelled).
    stop_contact_reason: str | None = Field(default=None, max_length=60)
    outcomes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The latest outcome (services.notify.domain.OUTCOME_STATES); ``outcomes`` keeps the history.
    outcome: str | None = Field(default=None, max_length=40)
    assigned_by: str | None = Field(default=None, max_length=100)
    # For the reports (time from referral to acceptance and to first contact): set once, never moved.
    accepted_at: datetime | None = utc_field(default=None)
    first_contact_at: datetime | None = utc_field(default=None)


class WebhookStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    # The provider is reached by polling: nothing to send.
    not_applicable = "not-applicable"
    # Tried for the whole retry period, or the endpoint is disabled: ops was told.
    failed = "failed"


class WebhookDelivery(SQLModel, table=True):
    """One event for one provider's endpoint, persisted so that retries survive restarts."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (UniqueConstraint("source_key", name="uq_webhook_delivery_source"),)

    # Sent as ``webhook-id``: the same on every attempt, so receivers can de-duplicate.
    id: str = Field(default_factory=lambda: f"msg_{uuid4().hex}", primary_key=True, max_length=40)
    # What caused it (event and offer), so a redelivered bus event never makes a second delivery.
    source_key: str = Field(max_length=120)
    organisation_id: str = Field(max_length=80, index=True)
    event_type: str = Field(max_length=60)
    offer_id: UUID
    case_id: UUID = Field(index=True)
    payload: str = Field(sa_type=Text)
    status: str = Field(default=WebhookStatus.pending, max_length=20, index=True)
    attempts: int = 0
    created_at: datetime = utc_field(default_factory=utcnow)
    next_attempt_at: datetime = utc_field(default_factory=utcnow, index=True)
    last_attempt_at: datetime | None = utc_field(default=None)
    # A status code or an exception type: never a response body (it is the receiver's to say).
    last_error: str | None = Field(default=None, max_length=120)
    delivered_at: datetime | None = utc_field(default=None)
    # The W3C trace context of the work that queued it, so each attempt joins the referral's trace.
    trace_context: str = Field(default_factory=stored_context, sa_type=Text)


class WebhookEndpointState(SQLModel, table=True):
    """An organisation's endpoint disabled after failing for the whole retry period."""

    __tablename__ = "webhook_endpoint_state"

    organisation_id: str = Field(primary_key=True, max_length=80)
    disabled_at: datetime | None = utc_field(default=None)
    disabled_reason: str | None = Field(default=None, max_length=200)
    updated_at: datetime = utc_field(default_factory=utcnow)


class EscalationStatus(StrEnum):
    open = "open"
    assigned = "assigned"


# Ops assign a service to an open escalation; assigning another later (the first could not help) keeps it assigned.
ESCALATION_STATES = StateMachine.of(
    "escalation",
    "status",
    {
        EscalationStatus.open: (EscalationStatus.assigned,),
        EscalationStatus.assigned: (EscalationStatus.assigned,),
    },
    self_moves=(EscalationStatus.assigned,),
)


class Escalation(SQLModel, table=True):
    """A case in the ops queue (``case.escalated``)."""

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    case_id: UUID = Field(index=True)
    reason: str = Field(max_length=300)
    status: str = Field(default=EscalationStatus.open, max_length=20, index=True)
    created_at: datetime = utc_field(default_factory=utcnow)
    updated_at: datetime = utc_field(default_factory=utcnow, index=True)
    assigned_service_id: str | None = Field(default=None, max_length=80)
    assigned_by: str | None = Field(default=None, max_length=100)


class EscalationNote(SQLModel, table=True):
    __tablename__ = "escalation_note"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    escalation_id: UUID = Field(foreign_key="escalation.id", index=True)
    at: datetime = utc_field(default_factory=utcnow)
    author: str = Field(max_length=100)
    # Ops' working note: stored for the case record, never logged, never put on the bus.
    text: str = Field(max_length=2000)


def upsert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An ``INSERT`` that can say ``ON CONFLICT`` on the dialect named (both backends have it; SQLAlchemy
    spells it per dialect): one statement where a read, an insert or update and a flush were three (issue 9)."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


TABLES = [
    CaseConsent,
    RoutingRecord,
    Offer,
    WebhookDelivery,
    WebhookEndpointState,
    Escalation,
    EscalationNote,
    AuditRecord,
    AuditChain,
]


async def offers_by_state(db: Database) -> None:
    """Set the offers-by-state gauge from the table (every state, so one that empties reads 0)."""
    async with db.session() as session:
        counts = dict((await session.exec(select(Offer.status, func.count()).group_by(Offer.status))).all())
    for state in OfferStatus:
        OFFERS.labels(state.value).set(counts.get(state.value, 0))
