"""Versioned event contracts: the only things that travel on the bus.

Data minimisation is the rule here: no event carries a name, a date of birth, contact details, a full
postcode or free text. Routing needs the postcode *sector* ("LS7 3", never the full postcode) and the areas
it resolves to, the risk band, the setting, needs, the characteristics the survivor chose to share, their
preferences and the consent state.
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
    # Only intake, which owns consent, advances this (1 when the referral arrives, +1 on each change).
    # Every copy (router, notify) keeps the highest version it has seen and ignores anything older,
    # whatever the event's timestamp: a re-route carries the router's copy, which can lag behind.
    version: int = Field(default=1, ge=1)

    def newer_than(self, other: ConsentState) -> bool:
        """Is this a later statement of consent than ``other``, as intake numbered them?"""
        return self.version > other.version


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


class AreaStatus(StrEnum):
    """Where a postcode is, as far as routing is concerned (``shared.geography.locate``)."""

    england = "england"  # resolved to English authorities (a cross-border sector counts if any part is English)
    wales = "wales"
    scotland = "scotland"
    northern_ireland = "northern-ireland"
    crown_dependency = "crown-dependency"  # Guernsey (GY), Jersey (JE), Isle of Man (IM)
    non_geographic = "non-geographic"  # BFPO (BF), non-geographic BX
    unknown = "unknown"  # well formed, but in no gazetteer
    missing = "missing"  # no postcode at all


class AreaShare(BaseModel):
    """An area code and the share of the sector's (or district's) postcodes that fall in it."""

    model_config = ConfigDict(frozen=True)

    code: str
    share: float


class CaseArea(BaseModel):
    """The most precise area that does not identify the survivor: the postcode sector and what it resolves to.

    Every candidate authority is kept with its share (main first). ``icbs`` come from the sector's own
    sub-ICB shares, not from its LADs. ``material`` lists the codes that make a service local to the case.
    """

    model_config = ConfigDict(frozen=True)

    status: AreaStatus
    sector: str | None = None
    district: str | None = None
    precision: Literal["sector", "district", "none"] = "none"
    lads: tuple[AreaShare, ...] = ()
    upper_tiers: tuple[AreaShare, ...] = ()
    icbs: tuple[AreaShare, ...] = ()
    region: str | None = None
    country: str | None = None  # ONS country code (E92000001, W92000004, S92000003, N92000002)
    material: tuple[str, ...] = ()
    # The main (largest-share) authority's codes: its services rank first.
    main: tuple[str, ...] = ()
    source: str | None = None


class CaseSummary(BaseModel):
    """What routing and an offer may know of a case: nothing that identifies the survivor."""

    model_config = ConfigDict(frozen=True)

    postcode_district: str | None
    # The postcode sector ("LS7 3"): intake derives it; older events carry the district only.
    postcode_sector: str | None = None
    # What the sector resolves to (the router fills it from its gazetteer copy before offering).
    area: CaseArea | None = None
    # Extra local authority / ICB codes a caller supplied (e.g. /explain); matched like resolved ones.
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

    # 2: the summary gained postcode_sector and area (additive: version-1 readers ignore them).
    schema_version: int = 2
    case_id: UUID
    referrer_ods: str
    summary: CaseSummary
    consent: ConsentState


class ReferralCancelled(Event):
    """The referrer revoked its ServiceRequest: pending offers are withdrawn."""

    subject: ClassVar[str] = "referral.cancelled"

    case_id: UUID
    reason: str | None = None


class PurgeRule(StrEnum):
    consent_withdrawn = "consent-withdrawn"
    case_closed = "case-closed"


class IdentifyingDataPurged(Event):
    """Intake emptied the referral's identifying data under its retention rules: the other services
    drop what they hold about the case that people wrote freely (ops' escalation notes)."""

    subject: ClassVar[str] = "referral.purged"

    case_id: UUID
    rule: PurgeRule


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

    # 2: the summary carries the resolved area (sector, every candidate with its share).
    schema_version: int = 2
    case_id: UUID
    decision_id: UUID
    summary: CaseSummary
    consent: ConsentState
    offer_to: tuple[RoutedService, ...]
    # What the referrer's Task says beside the offer, e.g. why only a national helpline was offered.
    referrer_note: str | None = None
    # The decision in the referrer's words (kinds of service offered, by-and-for chosen or not available,
    # helplines named as advice, escalation), for Task.note; notify passes it on with case.status. Built
    # by the router from fixed phrases and public helpline names: no free text, nothing identifying.
    routing_summary: str | None = None


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

    # What intake needs to decide a release itself (issue 13): the kind of service that accepted, and
    # whether it is by-and-for (consent has a scope of its own for those). None from older publishers.
    service_type: str | None = None
    by_and_for: bool = False


class OfferDeclined(OfferEvent):
    subject: ClassVar[str] = "case.offer.declined"


class OfferExpired(OfferEvent):
    subject: ClassVar[str] = "case.offer.expired"


class OfferWithdrawn(OfferEvent):
    subject: ClassVar[str] = "case.offer.withdrawn"


class OfferContactStopped(OfferEvent):
    """A provider that already received the handoff must stop all contact (consent withdrawn, even after
    the case closed, or the referral cancelled) and handle its copy of the identifying data as withdrawn.
    ``reason`` is the coded reason (``consent-withdrawn``, ``referral-cancelled``)."""

    subject: ClassVar[str] = "case.offer.contact-stopped"


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
    # A stable code for Task.statusReason (consent-refused, no-eligible-service, …); status_reason says it in words.
    status_reason_code: str | None = None
    # The routing decision in the referrer's words (see ``CaseRouted.routing_summary``), kept on the Task.
    routing_summary: str | None = None
    # The consent version the router decided on: intake ignores a final answer given on a consent it has
    # since replaced (the router decides again on the new one).
    consent_version: int | None = None


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
        IdentifyingDataPurged,
        CaseRouted,
        OfferMade,
        OfferAccepted,
        OfferDeclined,
        OfferExpired,
        OfferWithdrawn,
        OfferContactStopped,
        CaseStatus,
        CaseEscalated,
        DirectoryChanged,
    )
}


def decode_event(subject: str, data: bytes) -> Event:
    """Parse a message body by its subject; raises ``KeyError`` for an unknown subject."""
    return EVENT_TYPES[subject].model_validate_json(data)
