"""The router's own table: every routing decision, with its reasons and rule version."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from shared.db import utc_field
from shared.events import utcnow


class RoutingDecision(SQLModel, table=True):
    __tablename__ = "routing_decision"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    case_id: UUID = Field(index=True)
    rule_version: str = Field(max_length=30)
    offer_to: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    excluded: dict[str, str] = Field(sa_column=Column(JSON, nullable=False))
    escalation: str | None = Field(default=None, max_length=500)
    created_at: datetime = utc_field(default_factory=utcnow)


TABLES = [RoutingDecision]
