"""Append-only audit trail: every release and every read of identifying data is written here, in
the same transaction as the action it records. Rows are only ever inserted."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Caller
from shared.db import utc_field
from shared.events import utcnow


class AuditRecord(SQLModel, table=True):
    __tablename__ = "audit_record"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    at: datetime = utc_field(default_factory=utcnow, index=True)
    actor_kind: str = Field(max_length=20)
    actor_id: str = Field(max_length=100)
    action: str = Field(max_length=60)
    case_id: UUID | None = Field(default=None, index=True)
    # Who the data went to, or what was decided: identifiers and codes, never personal details.
    detail: str = Field(default="", max_length=500)


def record(session: AsyncSession, caller: Caller, action: str, *, case_id: UUID | None, detail: str = "") -> None:
    session.add(AuditRecord(actor_kind=caller.kind, actor_id=caller.id, action=action, case_id=case_id, detail=detail))
