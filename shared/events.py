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
    # Local authority / ICB codes of the district, when intake or the router resolved them.
    area_codes: tuple[str, ...] = ()
    risk_band: RiskBand
    setting: CareSetting
    # Vocabularies in shared.reference: Need, Community (characteristics), AbuseType, AgeBand, Gender.
    needs: tuple[str, ...] = ()
    characteristics: tuple[str, ...] = ()
    abuse_types: tuple[str, ...] = ()
    gender: str | None = None
    age_band: str | None = None
    # Preferred language for contact (BCP 47 / ISO 639-1 code), when not English.
    language: str | None = None
    preferences: RoutingPreferences = RoutingPreferences()


class ReferralReceived(Event):
    subject: ClassVar[str] = "referral.received"

    case_id: UUID
    referrer_ods: str
    summary: CaseSummary
    consent: ConsentState


class ReferralCancelled(Event):
    """The referrer revoked its ServiceRequest: pending offers are withdrawn."""

    subject: ClassVar[str] = "referral.cancelled"

    case_id: UUID
    reason: str | None = None


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
    # The response window the router chose for this offer (the service's own SLA or the area
    # protocol's, whichever is shorter); ``None`` leaves notify's per-risk default in force.
    respond_within_hours: float | None = None


class CaseRouted(Event):
    """The router's decision to offer a case to the services in ``offer_to``.

    Notify makes one offer for each entry. A case can be routed more than once: after an offer is
    declined (``case.offer.declined``) or expires (``case.offer.expired``) the router publishes another
    ``CaseRouted`` for the same ``case_id`` with a new ``event_id`` and ``decision_id`` whose ``offer_to``
    holds only the newly offered service(s), never one already offered for the case. Offers made by an
    earlier ``CaseRouted`` stay as they are.
    """

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
    # A stable code for Task.businessStatus (offered, accepted, contact-made, …); the text says it to a person.
    business_status_code: str | None = None
    status_reason: str | None = None
    # Coded outcomes reported by the provider (contact-made, unable-to-contact, …) for Task.output.
    outputs: tuple[str, ...] = ()


class CaseEscalated(Event):
    subject: ClassVar[str] = "case.escalated"

    case_id: UUID
    reason: str


class DirectoryChanged(Event):
    subject: ClassVar[str] = "directory.changed"

    # "provider-key": a key was issued, rotated, expired or revoked (notify drops its cached keys).
    entity: Literal["organisation", "service", "gazetteer", "provider-key"]
    entity_id: str
    change: Literal["created", "updated", "deleted", "imported"]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.subject: cls
    for cls in (
        ReferralReceived,
        ReferralCancelled,
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
