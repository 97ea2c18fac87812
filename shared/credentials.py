"""API key credentials an area issues itself: EHR clients (intake), provider keys and ops users
(directory). One lifecycle for all three.

A key is random, shown once and stored as its SHA-256 digest; it carries a name, when it was issued
and when it expires. Its state machine is ``active → revoked`` (final), with ``expired`` reached by
the clock: an expired key still shows in lists and can be rotated (a new secret and a new expiry) or
revoked. Every move is a compare-and-set in the database, so two operators racing get one winner and
the loser a clear conflict; repeating a revocation changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, TypeVar

from fastapi import HTTPException, status
from pydantic import AwareDatetime, BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import update
from sqlmodel import Field, SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.audit import record
from shared.auth import Caller, CallerKind, generate_api_key, hash_api_key
from shared.db import utc_field
from shared.events import utcnow

# Issuer of the keys the sample data ships with (development and demos only).
SAMPLE_DATA = Caller(CallerKind.service, "sample-data")
EndAction = Literal["expire", "revoke"]
DEFAULT_VALID_DAYS = 365
MAX_VALID_DAYS = 3 * 365


class CredentialState(StrEnum):
    active = "active"
    expired = "expired"
    revoked = "revoked"


class KeyCredential(SQLModel):
    """The columns every key-holding table has (a mixin: each owner adds its own key and links)."""

    name: str = Field(max_length=200)
    key_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = utc_field(default_factory=utcnow)
    expires_at: datetime = utc_field()
    rotated_at: datetime | None = utc_field(default=None)
    revoked_at: datetime | None = utc_field(default=None)
    # The ops user (or "bootstrap") who issued it: for the audit trail's "who", beside it.
    created_by: str = Field(default="", max_length=100)

    def state(self, now: datetime | None = None) -> CredentialState:
        if self.revoked_at is not None:
            return CredentialState.revoked
        if self.expires_at <= (now or utcnow()):
            return CredentialState.expired
        return CredentialState.active

    def usable(self, now: datetime | None = None) -> bool:
        return self.state(now) is CredentialState.active


class Validity(BaseModel):
    """How long a new or rotated key lives."""

    valid_days: int = PydanticField(default=DEFAULT_VALID_DAYS, ge=1, le=MAX_VALID_DAYS)

    def expires_at(self, now: datetime) -> datetime:
        return now + timedelta(days=self.valid_days)


class CredentialPublic(BaseModel):
    """What lists and reads show: never the key nor its digest."""

    name: str
    state: CredentialState
    created_at: datetime
    created_by: str
    expires_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def fields_of(cls, row: KeyCredential) -> dict[str, Any]:
        return {**row.model_dump(include=set(CredentialPublic.model_fields) - {"state"}), "state": row.state()}


class ShownOnce(BaseModel):
    """Added to an answer that issues or rotates a key: the only time the key is shown."""

    api_key: str = PydanticField(description="Shown once: only its digest is stored")


T = TypeVar("T", bound=KeyCredential)


async def find(session: AsyncSession, table: type[T], key: Any, what: str) -> T:
    """The credential with this primary key, or a 404 naming ``what`` was looked for."""
    row = await session.get(table, key)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No {what}.")
    return row


class CredentialConflict(Exception):
    """The move is not allowed from the credential's state (or it changed meanwhile): HTTP 409."""


@dataclass(frozen=True)
class NewKey:
    api_key: str
    key_hash: str


def new_key(prefix: str) -> NewKey:
    key = generate_api_key(prefix)
    return NewKey(key, hash_api_key(key))


async def _compare_and_set(session: AsyncSession, row: KeyCredential, *, same_key: bool = True,
                           **values: Any) -> bool:
    """Change ``row`` only if it is still unrevoked (and, unless told, holds the key it held when read)."""
    table = type(row)
    conditions = [*_identity(row), col(table.revoked_at).is_(None)]
    if same_key:
        conditions.append(col(table.key_hash) == row.key_hash)
    result = await session.exec(update(table).where(*conditions).values(**values))  # type: ignore[call-overload]
    if result.rowcount != 1:
        return False
    await session.refresh(row)
    return True


def _identity(row: KeyCredential) -> list[Any]:
    table = type(row)
    mapper = table.__mapper__  # type: ignore[attr-defined]
    return [column == getattr(row, mapper.get_property_by_column(column).key) for column in mapper.primary_key]


async def rotate(session: AsyncSession, row: KeyCredential, *, prefix: str, validity: Validity) -> str:
    """A new secret (and a new expiry) for the same named credential; the old secret stops working."""
    if row.revoked_at is not None:
        raise CredentialConflict(f"'{row.name}' is revoked: issue a new credential instead.")
    now = utcnow()
    key = new_key(prefix)
    if not await _compare_and_set(session, row, key_hash=key.key_hash, rotated_at=now,
                                  expires_at=validity.expires_at(now)):
        raise CredentialConflict(f"'{row.name}' changed meanwhile (rotated or revoked): read it again.")
    return key.api_key


async def expire(session: AsyncSession, row: KeyCredential, *, at: datetime | None = None) -> None:
    """Bring the expiry forward (default: now). Expiring an expired key again changes nothing."""
    now = utcnow()
    at = at or now
    if row.revoked_at is not None:
        raise CredentialConflict(f"'{row.name}' is revoked; it cannot be expired.")
    if row.expires_at <= at:
        return
    if not await _compare_and_set(session, row, expires_at=at):
        raise CredentialConflict(f"'{row.name}' changed meanwhile: read it again.")


async def revoke(session: AsyncSession, row: KeyCredential) -> bool:
    """Revoke for good; returns False (and changes nothing) when it already was."""
    if row.revoked_at is not None:
        return False
    if not await _compare_and_set(session, row, same_key=False, revoked_at=utcnow()):
        await session.refresh(row)
        return False  # a concurrent revocation won: same outcome
    return True


class RotateRequest(Validity):
    pass


class ExpireRequest(BaseModel):
    # Default: now. A time in the past or future brings the expiry forward to it (never later).
    at: AwareDatetime | None = None


def issue(session: AsyncSession, caller: Caller, row: KeyCredential, *, kind: str, subject: str) -> None:
    """Store a new credential and its audit record (who issued what, when, until when; never the key)."""
    row.created_by = caller.id
    session.add(row)
    record(session, caller, f"issue-{kind}", case_id=None, detail=f"{subject}; expires {row.expires_at:%Y-%m-%d}")


async def change(
    session: AsyncSession, caller: Caller, row: KeyCredential, action: str, *, kind: str, subject: str,
    prefix: str, rotation: RotateRequest | None = None, expiry: ExpireRequest | None = None,
) -> str | None:
    """Rotate, expire or revoke ``row`` with its audit record; the new key for a rotation.

    An illegal move is a 409; repeating a revocation or an expiry is harmless and records nothing new.
    """
    try:
        if action == "rotate":
            key: str | None = await rotate(session, row, prefix=prefix, validity=rotation or RotateRequest())
        elif action == "expire":
            before = row.expires_at
            await expire(session, row, at=expiry.at if expiry else None)
            if row.expires_at == before:
                return None
            key = None
        elif action == "revoke":
            if not await revoke(session, row):
                return None
            key = None
        else:
            raise ValueError(action)
    except CredentialConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    record(session, caller, f"{action}-{kind}", case_id=None,
           detail=f"{subject}; state {row.state()}; expires {row.expires_at:%Y-%m-%d %H:%M}")
    return key
