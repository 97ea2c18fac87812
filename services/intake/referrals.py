"""What happens to a referral: received, cancelled, its consent updated. Each change commits with its
outbox event and its idempotency record in one transaction, so nothing is half-done or done twice."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast
from uuid import UUID, uuid4

import orjson
from fhir.resources.R4B.consent import Consent
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.domain import ParsedCancellation, ParsedReferral, consent_state
from services.intake.store import ApiClient, IdempotencyRecord, Referral
from services.intake.task import TASK_STATES, task_resource
from shared.audit import record
from shared.auth import Caller, CallerKind
from shared.crypto import FieldCipher
from shared.db import Database
from shared.events import (
    ConsentState,
    ConsentStatus,
    ConsentUpdated,
    ReferralCancelled,
    ReferralReceived,
    TaskStatus,
    utcnow,
)
from shared.fhir import FhirError, Issue
from shared.group_commit import GroupCommit, Row, row_values
from shared.jsontext import dumps as json_dumps
from shared.outbox import enqueue, outbox_message


@dataclass(frozen=True)
class Answer:
    status_code: int
    resource: dict[str, Any]
    location: str | None = None
    replayed: bool = False


def _digest(endpoint: str, canonical: bytes) -> str:
    return hashlib.sha256(endpoint.encode() + b"\n" + canonical).hexdigest()


def _canonical_v1(body: dict[str, Any]) -> bytes:
    """The canonical JSON the previous release made fingerprints of (the standard library's): still matched."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _canonical(body: dict[str, Any]) -> bytes:
    """Keys sorted, no whitespace, UTF-8: orjson, ~10 times faster than the standard library on a
    referral Bundle (issue 9: the fingerprint was 7 % of intake's request path). An integer beyond 64
    bits, which orjson does not write, keeps the older form: either way one body has one form."""
    try:
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _canonical_v1(body)


@dataclass(frozen=True)
class Fingerprint:
    """What tells a retry from a different request under the same idempotency key: the same request,
    whatever its key order or whitespace, has the same fingerprint. ``value`` is what a new record
    stores; ``matches`` accepts the older canonical form too, so that a retry of a request recorded by
    the previous release still gets its first answer after an upgrade."""

    endpoint: str
    body: dict[str, Any] = field(repr=False)  # the request itself: never in a repr, a log line or a trace
    value: str

    def matches(self, stored: str) -> bool:
        return stored == self.value or stored == _digest(self.endpoint, _canonical_v1(self.body))


def request_hash(endpoint: str, body: dict[str, Any]) -> Fingerprint:
    return Fingerprint(endpoint, body, _digest(endpoint, _canonical(body)))


async def _recorded(session: AsyncSession, client_id: str, keys: Sequence[str]) -> IdempotencyRecord | None:
    statement = select(IdempotencyRecord).where(
        IdempotencyRecord.client_id == client_id, col(IdempotencyRecord.key).in_(list(keys))
    )
    return (await session.exec(statement)).first()


def _replay(record: IdempotencyRecord, fingerprint: Fingerprint) -> Answer:
    if not fingerprint.matches(record.request_hash):
        kind, _, _ = record.key.partition(":")
        expression = "Bundle.identifier" if kind == "bundle" else None
        raise FhirError(
            409,
            [
                Issue(
                    "duplicate",
                    "A different request was already made with this "
                    f"{'Bundle.identifier' if expression else 'X-Request-Id'}.",
                    expression,
                )
            ],
        )
    return Answer(record.status_code, record.response, record.location, replayed=True)


async def idempotent(
    db: Database,
    session: AsyncSession,
    client_id: str,
    keys: Sequence[str],
    fingerprint: Fingerprint,
    work: Callable[[], Awaitable[Answer]],
) -> Answer:
    """Run ``work`` (on the request's ``session``) once per idempotency key: a retry gets the first
    answer again, a different request under the same key a 409.

    No look-up first: the work and its idempotency records commit together, and a key already taken
    fails that insert (so a retry, racing or not, rolls back and replays). The common case, a new
    request, costs one short write transaction and nothing else."""
    try:
        async with db.transaction(session):
            answer = await work()
            for key in keys:
                session.add(
                    IdempotencyRecord(
                        client_id=client_id,
                        key=key,
                        request_hash=fingerprint.value,
                        status_code=answer.status_code,
                        response=answer.resource,
                        location=answer.location,
                    )
                )
    except (IntegrityError, FhirError) as exc:
        # A retry's work can itself fail (the Bundle.identifier already has a referral, the referral is
        # already cancelled): the first answer under the key is the answer.
        existing = await _recorded(session, client_id, keys) if keys else None
        if existing is None:
            raise exc from None
        return _replay(existing, fingerprint)
    return answer


@dataclass(frozen=True)
class NewReferral:
    """Everything a new referral writes (the referral, its event) and the answer, built beforehand."""

    rows: tuple[Row, ...]
    fingerprint: Fingerprint
    answer: Answer


def new_referral(
    client: ApiClient, parsed: ParsedReferral, cipher: FieldCipher, fingerprint: Fingerprint
) -> NewReferral:
    """A new referral, its identifying details encrypted under the active key, and its announcement.

    Built before the transaction that stores it (encryption, serialising the event and the Task are
    CPU work), so that the transaction only inserts: under load, time spent holding a connection, and
    on SQLite the one writer slot, is what limits throughput (issue 9). The referral is built as its
    column values (``row_values``: the same values a ``Referral`` row would insert, without the ORM).
    """
    referral_id = uuid4()
    table, values = row_values(
        Referral,
        id=referral_id,
        client_id=client.id,
        bundle_identifier=parsed.bundle_identifier,
        service_request_identifier=parsed.service_request_identifier,
        request_hash=fingerprint.value,
        referrer_ods=parsed.referrer_ods,
        summary=parsed.summary.model_dump(mode="json"),
        consent=parsed.consent.model_dump(mode="json"),
        consent_version=parsed.consent.version,
        # The row id is the associated data: a ciphertext copied onto another referral does not decrypt.
        identifying=cipher.encrypt(json_dumps(parsed.identifying), aad=referral_id.bytes),
    )
    announcement = outbox_message(
        ReferralReceived(
            case_id=referral_id,
            referrer_ods=parsed.referrer_ods,
            summary=parsed.summary,
            consent=parsed.consent,
        )
    )
    # The Task reads the referral's columns only: the values stand in for the row.
    task = task_resource(cast(Referral, SimpleNamespace(**values)))
    answer = Answer(202, task, f"/fhir/Task/{referral_id}")
    return NewReferral(((table, values), announcement), fingerprint, answer)


async def receive(
    writer: GroupCommit, db: Database, client_id: str, keys: Sequence[str], new: NewReferral
) -> Answer:
    """Store a new referral, its announcement and its idempotency records, committed with other
    requests' new referrals in one transaction (``shared.group_commit``); returns once it is durable.

    Idempotent as ``idempotent`` is: a key already taken fails this referral's insert alone, and the
    first answer under the key is replayed (or a 409 for a different request under it)."""
    fingerprint = new.fingerprint
    records = [
        row_values(
            IdempotencyRecord,
            client_id=client_id,
            key=key,
            request_hash=fingerprint.value,
            status_code=new.answer.status_code,
            response=new.answer.resource,
            location=new.answer.location,
        )
        for key in keys
    ]
    try:
        await writer.insert([*new.rows, *records])
    except IntegrityError:
        existing = None
        if keys:  # a session only now: a new referral, the common case, needs none
            async with db.session() as session:
                existing = await _recorded(session, client_id, keys)
        if existing is None:
            raise
        return _replay(existing, fingerprint)
    return new.answer


async def own_referral(session: AsyncSession, client: ApiClient, task_id: str | UUID) -> Referral:
    """A referral this client made; any other is "not found", so ids cannot be probed."""
    try:
        referral_id = task_id if isinstance(task_id, UUID) else UUID(task_id)
    except ValueError:
        referral_id = None
    referral = await session.get(Referral, referral_id) if referral_id else None
    if referral is None or referral.client_id != client.id:
        raise FhirError(404, [Issue("not-found", f"No Task with id '{task_id}'.", "Task.id")])
    return referral


async def cancel(session: AsyncSession, client: ApiClient, parsed: ParsedCancellation) -> Answer:
    """The referrer revoked its ServiceRequest: the Task is cancelled and router and notify are told."""
    referral: Referral | None = None
    if parsed.service_request_id:
        try:
            referral = await own_referral(session, client, parsed.service_request_id)
        except FhirError:
            referral = None
    if referral is None and parsed.service_request_identifier:
        statement = (
            select(Referral)
            .where(
                Referral.client_id == client.id,
                Referral.service_request_identifier == parsed.service_request_identifier,
            )
            .order_by(col(Referral.created_at).desc())
        )
        referral = (await session.exec(statement)).first()
    if referral is None:
        raise FhirError(
            404,
            [
                Issue(
                    "not-found",
                    "No referral from this client matches the revoked ServiceRequest.",
                    "ServiceRequest.identifier",
                )
            ],
        )
    now = utcnow()
    if await TASK_STATES.advance(
        session,
        referral,
        TaskStatus.cancelled,
        business_status="cancelled by the referrer",
        business_status_code="cancelled",
        status_reason=parsed.reason,
        last_updated=now,
        closed_at=now,
    ):
        enqueue(session, ReferralCancelled(case_id=referral.id, reason=parsed.reason))
        record(
            session,
            referrer(client),
            "cancel-referral",
            case_id=referral.id,
            detail=f"ODS {referral.referrer_ods}",
            reason=parsed.reason or "revoked by the referrer",
        )
    return Answer(200, task_resource(referral))


async def update_consent(
    session: AsyncSession,
    client: ApiClient,
    task_id: UUID,
    consent: Consent,
    body: dict[str, Any],
    *,
    purge_after: timedelta,
) -> Answer:
    """A new Consent for an existing referral: stored, and announced when it changes what may be shared.

    Each change takes the next consent version, compare-and-set on the row, so two racing updates
    cannot both announce the same version. A withdrawal is always accepted, even once the Task is
    completed or cancelled: providers that already hold the handoff must still be told to stop, and
    the identifying data is marked for purge (``purge_after`` from now) unless a recorded safeguarding
    basis keeps the MARAC's route open. Any other change to a finished referral is a 409.
    """
    referral = await own_referral(session, client, task_id)
    before = current_consent(referral)
    # The safeguarding basis is the referrer's recorded decision, not part of the survivor's consent.
    stated = consent_state(consent, safeguarding_basis=before.safeguarding_basis, path="Consent")
    withdrawn = stated.status is ConsentStatus.withdrawn
    if TASK_STATES.is_final(referral.task_status) and not withdrawn:
        raise FhirError(
            409,
            [
                Issue(
                    "business-rule",
                    f"The referral is {referral.task_status}: only a withdrawal of consent is accepted now.",
                    "Task.status",
                )
            ],
        )
    if stated.model_copy(update={"version": before.version}) != before:
        now = utcnow()
        after = stated.model_copy(update={"version": before.version + 1})
        purge_due = now + purge_after if withdrawn and not after.safeguarding_basis else None
        changed = await session.exec(  # type: ignore[call-overload]
            update(Referral)
            .where(col(Referral.id) == referral.id, col(Referral.consent_version) == before.version)
            .values(
                consent=after.model_dump(mode="json"),
                consent_version=after.version,
                last_updated=now,
                purge_due_at=purge_due,
            )
        )
        if changed.rowcount != 1:
            raise FhirError(
                409,
                [
                    Issue(
                        "conflict",
                        "The consent changed while this update was made; read the "
                        "Task and send the update again.",
                        "Consent",
                    )
                ],
            )
        await session.refresh(referral)
        enqueue(session, ConsentUpdated(case_id=referral.id, consent=after))
        record(
            session,
            referrer(client),
            "update-consent",
            case_id=referral.id,
            detail=f"consent version {after.version}; status {after.status.value}; scopes "
            f"{','.join(sorted(str(s) for s in after.scopes)) or 'none'}"
            + (f"; purge due {purge_due:%Y-%m-%dT%H:%MZ}" if purge_due else ""),
            reason="consent updated by the referrer",
        )
    resource = {**body, "id": str(referral.id), "meta": {"lastUpdated": referral.last_updated.isoformat()}}
    return Answer(200, resource, f"/fhir/Consent/{referral.id}")


def referrer(client: ApiClient) -> Caller:
    """The EHR client as the audit trail names it."""
    return Caller(CallerKind.ehr_client, client.id)


def current_consent(referral: Referral) -> ConsentState:
    """The referral's consent as intake holds it (the authoritative copy), with its version."""
    return ConsentState.model_validate({**referral.consent, "version": referral.consent_version})
