"""Versioned event contracts: the only things that travel on the bus.

Data minimisation is the rule here: no event carries a name, a date of birth, contact details, a full
postcode or free text. Routing needs the postcode *district* (outward code), the risk band, the setting,
needs, the characteristics the survivor chose to share, their preferences and the consent state.
Every event has a unique ``event_id``, which the bus also sends as ``Nats-Msg-Id``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class RiskBand(StrEnum):
    standard = "standard"
    medium = "medium"
    high = "high"


class CareSetting(StrEnum):
    gp = "gp"
    emergency_department = "emergency-department"
    maternity = "maternity"
    mental_health = "mental-health"
    sexual_health = "sexual-health"
    other = "other"


class ConsentStatus(StrEnum):
    granted = "granted"
    refused = "refused"
    not_asked = "not-asked"
    withdrawn = "withdrawn"


class ConsentScope(StrEnum):
    """The kinds of service a survivor's consent can permit a handoff to."""

    specialist_da = "specialist-da-service"
    by_and_for = "by-and-for-service"
    idva = "idva"
    marac = "marac"


class ConsentState(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: ConsentStatus
    scopes: tuple[ConsentScope, ...] = ()
    expires_at: datetime | None = None
    # Named organisations the survivor permitted, by directory organisation id (not a person).
    organisations: tuple[str, ...] = ()
    # A recorded high-risk safeguarding basis lets the MARAC route proceed without consent.
    safeguarding_basis: bool = False


class ByAndForPreference(StrEnum):
    wanted = "wanted"
    declined = "declined"
    no_preference = "no-preference"


class RoutingPreferences(BaseModel):
    model_config = ConfigDict(frozen=True)

    by_and_for: ByAndForPreference = ByAndForPreference.no_preference
    worker_gender: str | None = None
    language: str | None = None
    declined_service_types: tuple[str, ...] = ()


class TaskStatus(StrEnum):
    """FHIR Task.status values the referrer sees."""

    requested = "requested"
    accepted = "accepted"
    rejected = "rejected"
    in_progress = "in-progress"
    completed = "completed"
    cancelled = "cancelled"


class Event(BaseModel):
    """Base of every bus event."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    subject: ClassVar[str]

    event_id: UUID = Field(default_factory=uuid4)
    schema_version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)


class CaseSummary(BaseModel):
    """What routing and an offer may know of a case: nothing that identifies the survivor."""

    model_config = ConfigDict(frozen=True)

    postcode_district: str | None
    area_codes: tuple[str, ...] = ()
    risk_band: RiskBand
    setting: CareSetting
    needs: tuple[str, ...] = ()
    characteristics: tuple[str, ...] = ()
    preferences: RoutingPreferences = RoutingPreferences()


class ReferralReceived(Event):
    subject: ClassVar[str] = "referral.received"

    case_id: UUID
    referrer_ods: str
    summary: CaseSummary
    consent: ConsentState


class ConsentUpdated(Event):
    subject: ClassVar[str] = "referral.consent.updated"

    case_id: UUID
    consent: ConsentState


class RoutedService(BaseModel):
    model_config = ConfigDict(frozen=True)

    service_id: str
    organisation_id: str
    service_type: str
    name: str
    reasons: tuple[str, ...] = ()
    # Communities the service is by and for (decides the consent scope it needs).
    by_and_for: tuple[str, ...] = ()


class CaseRouted(Event):
    subject: ClassVar[str] = "case.routed"

    case_id: UUID
    decision_id: UUID
    summary: CaseSummary
    consent: ConsentState
    offer_to: tuple[RoutedService, ...]


class OfferEvent(Event):
    case_id: UUID
    offer_id: UUID
    service_id: str
    organisation_id: str
    reason: str | None = None


class OfferMade(OfferEvent):
    subject: ClassVar[str] = "case.offer.made"


class OfferAccepted(OfferEvent):
    subject: ClassVar[str] = "case.offer.accepted"


class OfferDeclined(OfferEvent):
    subject: ClassVar[str] = "case.offer.declined"


class OfferExpired(OfferEvent):
    subject: ClassVar[str] = "case.offer.expired"


class OfferWithdrawn(OfferEvent):
    subject: ClassVar[str] = "case.offer.withdrawn"


class CaseStatus(Event):
    subject: ClassVar[str] = "case.status"

    case_id: UUID
    status: TaskStatus
    business_status: str
    status_reason: str | None = None


class CaseEscalated(Event):
    subject: ClassVar[str] = "case.escalated"

    case_id: UUID
    reason: str


class DirectoryChanged(Event):
    subject: ClassVar[str] = "directory.changed"

    entity: Literal["organisation", "service", "gazetteer"]
    entity_id: str
    change: Literal["created", "updated", "deleted", "imported"]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.subject: cls
    for cls in (
        ReferralReceived,
        ConsentUpdated,
        CaseRouted,
        OfferMade,
        OfferAccepted,
        OfferDeclined,
        OfferExpired,
        OfferWithdrawn,
        CaseStatus,
        CaseEscalated,
        DirectoryChanged,
    )
}


def decode_event(subject: str, data: bytes) -> Event:
    """Parse a message body by its subject; raises ``KeyError`` for an unknown subject."""
    return EVENT_TYPES[subject].model_validate_json(data)
