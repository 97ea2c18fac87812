"""Intake's tables: EHR clients, referrals (identifying data encrypted) and the referral's Task state."""

# No "from __future__ import annotations": SQLModel resolves the relationship from a real annotation.
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, Relationship, SQLModel

from shared.audit import AuditChain, AuditRecord
from shared.credentials import KeyCredential
from shared.db import utc_field
from shared.events import TaskStatus, utcnow


class ApiClient(KeyCredential, table=True):
    """An EHR integration: its hashed API key (lifecycle in ``shared.credentials``) and the ODS
    organisations it may refer for. A revoked or expired client keeps its referrals (and its Tasks'
    history) but can no longer call."""

    __tablename__ = "api_client"

    id: str = Field(primary_key=True, max_length=80)
    # Public keys for private_key_jwt (``services.intake.oauth``): an inline JWKS or a JWKS URL, or neither.
    jwks: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    jwks_url: str | None = Field(default=None, max_length=500)
    # Loaded with the client (one extra query), so the ODS check needs no second round trip later.
    ods: list["ApiClientOds"] = Relationship(
        sa_relationship_kwargs={"lazy": "selectin", "cascade": "all, delete-orphan", "order_by": "ApiClientOds.ods_code"}
    )

    @property
    def ods_codes(self) -> list[str]:
        return [link.ods_code for link in self.ods]


class ApiClientOds(SQLModel, table=True):
    """One ODS organisation code an EHR client may refer for (a client may serve several practices)."""

    __tablename__ = "api_client_ods"

    client_id: str = Field(foreign_key="api_client.id", primary_key=True, max_length=80)
    ods_code: str = Field(primary_key=True, max_length=20, index=True)


class Referral(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("client_id", "bundle_identifier", name="uq_referral_client_bundle"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    client_id: str = Field(max_length=80, index=True)
    bundle_identifier: str | None = Field(default=None, max_length=300)
    # The EHR's own identifier for the referral ("system|value"): Task search and cancellation use it.
    service_request_identifier: str | None = Field(default=None, max_length=300, index=True)
    request_hash: str = Field(max_length=64)
    referrer_ods: str = Field(max_length=20)
    # Routing data (no identifying details): the CaseSummary and ConsentState as JSON.
    summary: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    consent: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # The consent's version (also inside ``consent``), as a column so that a change is a compare-and-set:
    # two updates racing from the same version cannot both publish the next number.
    consent_version: int = Field(default=1)
    # Identifying details, AES-GCM encrypted: "<key id>:<base64>".
    identifying: str = Field(sa_type=Text)
    # Consent withdrawn: the identifying data is purged from this moment (emptied, ``purged_at`` set).
    purge_due_at: datetime | None = utc_field(default=None, index=True)
    purged_at: datetime | None = utc_field(default=None)
    # When the Task reached a final state (completed, rejected, cancelled): the identifying data is purged
    # ``INTAKE_CLOSED_PURGE_DAYS`` later (``services.intake.retention``).
    closed_at: datetime | None = utc_field(default=None, index=True)
    task_status: str = Field(default=TaskStatus.requested, max_length=20)
    business_status: str = Field(default="received", max_length=200)
    business_status_code: str | None = Field(default=None, max_length=60)
    # Coded outcomes reported by providers (Task.output), kept current by case.status.
    task_outputs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status_reason: str | None = Field(default=None, max_length=500)
    # Task.statusReason's code (consent-refused, no-eligible-service, …) and the routing decision's
    # referrer-safe summary (Task.note), both from case.status.
    status_reason_code: str | None = Field(default=None, max_length=60)
    routing_summary: str | None = Field(default=None, max_length=1000)
    created_at: datetime = utc_field(default_factory=utcnow)
    last_updated: datetime = utc_field(default_factory=utcnow, index=True)


class IdempotencyRecord(SQLModel, table=True):
    """The first answer to a request, per client and key (Bundle.identifier or X-Request-Id): a retry
    gets it again, a different body under the same key gets a 409. Written in the same transaction as
    the change it answers for, so a racing retry either sees it or fails on the primary key."""

    __tablename__ = "idempotency_record"

    client_id: str = Field(primary_key=True, max_length=80)
    key: str = Field(primary_key=True, max_length=320)
    request_hash: str = Field(max_length=64)
    status_code: int
    # The FHIR resource answered (a Task or a Consent: no identifying details) and its Location.
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    location: str | None = Field(default=None, max_length=200)
    created_at: datetime = utc_field(default_factory=utcnow)


class ClientAssertionJti(SQLModel, table=True):
    """A client assertion's ``jti``, kept until the assertion expires: the same assertion twice is a replay."""

    __tablename__ = "client_assertion_jti"

    client_id: str = Field(primary_key=True, max_length=80)
    jti: str = Field(primary_key=True, max_length=200)
    expires_at: datetime = utc_field(index=True)


class AccessToken(SQLModel, table=True):
    """A short-lived access token issued at the token endpoint, stored only as its SHA-256 digest."""

    __tablename__ = "access_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(max_length=80, index=True)
    created_at: datetime = utc_field(default_factory=utcnow)
    expires_at: datetime = utc_field(index=True)


class AcceptedOffer(SQLModel, table=True):
    """An offer a provider accepted, as notify announced it (``case.offer.accepted``): intake releases
    identifying data only to an organisation holding one, whatever the caller of the handoff says
    (issue 13). ``stopped_at``: the provider was told to stop contact (consent withdrawn, cancelled)."""

    __tablename__ = "accepted_offer"

    offer_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    organisation_id: str = Field(max_length=80)
    service_id: str = Field(max_length=80)
    service_type: str | None = Field(default=None, max_length=40)
    by_and_for: bool = Field(default=False)
    accepted_at: datetime = utc_field(default_factory=utcnow)
    stopped_at: datetime | None = utc_field(default=None)


TABLES = [ApiClient, ApiClientOds, Referral, IdempotencyRecord, AcceptedOffer, ClientAssertionJti, AccessToken,
          AuditRecord, AuditChain]
