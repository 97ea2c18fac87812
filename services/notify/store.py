"""Notify's tables: the case's consent as last known, and each offer made to a provider."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from shared.audit import AuditRecord
from shared.db import utc_field
from shared.events import utcnow


class OfferStatus(StrEnum):
    offered = "offered"
    accepted = "accepted"
    declined = "declined"
    expired = "expired"
    withdrawn = "withdrawn"


class CaseConsent(SQLModel, table=True):
    """The consent state notify checks at the moment of each release."""

    __tablename__ = "case_consent"

    case_id: UUID = Field(primary_key=True)
    consent: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    updated_at: datetime = utc_field(default_factory=utcnow)


class Offer(SQLModel, table=True):
    id: UUID = Field(default_factory=uuid4, primary_key=True)
    case_id: UUID = Field(index=True)
    decision_id: UUID
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
    respond_by: datetime = utc_field()
    last_updated: datetime = utc_field(default_factory=utcnow, index=True)


TABLES = [CaseConsent, Offer, AuditRecord]
