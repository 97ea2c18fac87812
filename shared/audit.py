"""Append-only audit trail: every release and every read of identifying data, consent change,
credential action and ops action is written here, in the same transaction as the action it records.

Rows are only ever inserted by ``record``, *unsealed*. A sealer (``shared.audit_chain``), one at a
time per service, later gives them their place in the service's hash chain: a sequence number, the
hash of the record before and their own hash (HMAC-SHA256 with the configured audit key). Sealing
after commit, rather than chaining inside every audited transaction, keeps the action's transaction
free of a chain head that every audited request would queue for (issue 13: intake under load).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Caller
from shared.db import AUDITED, Database, utc_field
from shared.events import utcnow


class AuditRecord(SQLModel, table=True):
    __tablename__ = "audit_record"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    at: datetime = utc_field(default_factory=utcnow, index=True)
    actor_kind: str = Field(max_length=20)
    actor_id: str = Field(max_length=100, index=True)
    action: str = Field(max_length=60)
    case_id: UUID | None = Field(default=None, index=True)
    # Who the data went to, or what was decided: identifiers and codes, never personal details.
    detail: str = Field(default="", max_length=500)
    # Why: the basis or rule the action rests on (a code or a short fixed phrase, never free text).
    reason: str = Field(default="", max_length=200)
    # The chain, set by the sealer (None until then): position, the previous record's hash, this one's,
    # and the id of the audit key it was computed with ("" for plain SHA-256 where no key is configured).
    seq: int | None = Field(default=None, sa_type=BigInteger, unique=True, index=True)
    prev_hash: str | None = Field(default=None, max_length=64)
    hash: str | None = Field(default=None, max_length=64)
    key_id: str | None = Field(default=None, max_length=40)


class AuditChain(SQLModel, table=True):
    """The head of the service's chain: one row (id 1), moved only by the sealer, compare-and-set.

    It is what several replicas' sealers serialise on (a row lock on PostgreSQL, the one writer on
    SQLite), and what ``pathways audit verify`` compares the last record with, so that deleting the
    newest records is detected too."""

    __tablename__ = "audit_chain"

    id: int = Field(default=1, primary_key=True)
    seq: int = Field(default=0, sa_type=BigInteger)
    hash: str = Field(default="0" * 64, max_length=64)
    updated_at: datetime = utc_field(default_factory=utcnow)


AUDIT_TABLES: list[type[SQLModel]] = [AuditRecord, AuditChain]


def record(session: AsyncSession, caller: Caller, action: str, *, case_id: UUID | None, detail: str = "",
           reason: str = "") -> None:
    """Add an audit record to the caller's transaction: who (``caller``), what (``action``, a fixed
    verb such as ``release-identifying-data``), which case, when (now) and why (``reason``).

    ``detail`` and ``reason`` hold identifiers and codes only: the trail is shown to ops and must never
    itself become a copy of anyone's identifying data."""
    session.add(AuditRecord(actor_kind=caller.kind, actor_id=caller.id[:100], action=action[:60], case_id=case_id,
                            detail=detail[:500], reason=reason[:200]))
    session.info[AUDITED] = True


async def record_read(db: Database, session: AsyncSession, caller: Caller, action: str, *, case_id: UUID | None = None,
                      detail: str = "", reason: str = "") -> None:
    """Record a read (an ops list, a credential's details) once it is done and before it is answered:
    if the record cannot be written, the caller gets an error rather than the data. Build the answer
    first: the transaction expires what the session loaded."""
    async with db.transaction(session):
        record(session, caller, action, case_id=case_id, detail=detail, reason=reason)
