"""The provider polling API: a provider's own offers, its answer, the consent-gated handoff, outcomes."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from cachetools import TTLCache
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notify import offers
from services.notify.domain import DeclineReason, Outcome, safe_contact
from services.notify.offers import known_consent
from services.notify.settings import NotifySettings
from services.notify.store import CaseConsent, Offer, OfferStatus
from shared.audit import record
from shared.auth import Caller, CallerKind, PresentedKey, hash_api_key
from shared.consent import CONSENT_REFUSAL, NOT_ACCEPTED, release_verdict
from shared.events import utcnow
from shared.db import end_read
from shared.openapi import errors
from shared.problems import PROBLEM_JSON
from shared.search import InvalidSearch, last_updated_condition
from shared.service import RuntimeDep, SessionDep

router = APIRouter(tags=["provider"])
# Asking intake again while an acceptance crosses the bus: about 3 s in all.
HANDOFF_ATTEMPTS = 8
HANDOFF_RETRY_SECONDS = 0.1


class OfferPublic(BaseModel):
    id: UUID
    case_id: UUID
    service_id: str
    service_name: str
    service_type: str
    status: str
    status_reason: str | None
    # The provider holds the handoff and must stop all contact (consent withdrawn, referral cancelled).
    stop_contact: bool
    stop_contact_reason: str | None
    summary: dict[str, Any]
    reasons: list[str]
    # The latest outcome reported (they only move forwards; "closed" is final), and all of them in order.
    outcome: str | None
    outcomes: list[str]
    created_at: datetime
    respond_by: datetime
    last_updated: datetime
    links: dict[str, str]

    @classmethod
    def of(cls, offer: Offer) -> OfferPublic:
        base = f"/offers/{offer.id}"
        return cls(
            **offer.model_dump(include=set(cls.model_fields) - {"links", "stop_contact"}),
            stop_contact=offer.stop_contact_reason is not None,
            links={"self": base, "accept": f"{base}/accept", "decline": f"{base}/decline",
                   "handoff": f"{base}/handoff", "outcomes": f"{base}/outcomes"},
        )


class DeclineRequest(BaseModel):
    reason: DeclineReason
    # Required for "other": the provider's own words about its service (never about the survivor).
    text: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def other_needs_text(self) -> DeclineRequest:
        if self.reason is DeclineReason.other and not (self.text or "").strip():
            raise ValueError("a decline for reason 'other' needs a text")
        return self


class OutcomeRequest(BaseModel):
    outcome: Outcome


class SafeContact(BaseModel):
    do_not_contact: bool
    no_voicemail: bool
    flags: list[str]
    instructions: str | None


class Handoff(BaseModel):
    """The identifying handoff: safe-contact rules first, then who the survivor is and how to reach them."""

    safe_contact: SafeContact
    offer_id: UUID
    case_id: UUID
    release_basis: str
    survivor: dict[str, Any]


async def require_provider(key: PresentedKey, request: Request, runtime: RuntimeDep) -> Caller:
    """A provider, identified by one of its organisation's keys as the directory knows it.

    By default the directory is asked on every request (one indexed look-up), so a revoked key stops at
    the next call. A positive cache (``provider_key_cache_seconds``) is possible, never past the key's
    expiry, emptied when the directory announces a key change. Unknown keys are remembered for
    ``unknown_key_cache_seconds`` in a bounded cache: guessing keys costs the directory nothing."""
    settings: NotifySettings = runtime.settings  # type: ignore[assignment]
    cache: dict[str, tuple[float, Caller]] = request.app.state.provider_keys
    unknown: TTLCache[str, bool] = request.app.state.unknown_provider_keys
    digest = hash_api_key(key)
    refused = HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Unknown, expired or revoked API key.",
                            headers={"WWW-Authenticate": "Bearer"})
    if digest in unknown:
        raise refused
    hit = cache.get(digest)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    response = await runtime.http.post(
        f"{settings.directory_url}/internal/providers/authenticate",
        json={"api_key": key},
        headers=settings.service_headers(),
    )
    if response.status_code == 404:
        cache.pop(digest, None)
        unknown[digest] = True
        raise refused
    if response.status_code != 200:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="Cannot check credentials right now.")
    identity = response.json()
    caller = Caller(CallerKind.provider, identity["organisation_id"])
    lifetime = settings.provider_key_cache_seconds
    if identity.get("expires_at"):
        lifetime = min(lifetime, (datetime.fromisoformat(identity["expires_at"]) - utcnow()).total_seconds())
    if lifetime > 0:
        cache[digest] = (time.monotonic() + lifetime, caller)
    return caller


ProviderDep = Annotated[Caller, Depends(require_provider)]


async def own_offer(session: AsyncSession, provider: Caller, offer_id: UUID) -> Offer:
    offer = await session.get(Offer, offer_id)
    # Another provider's offer is "not found": offers cannot be probed.
    if offer is None or offer.organisation_id != provider.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No offer with id '{offer_id}'.")
    return offer


def _cursor(offer: Offer) -> str:
    return base64.urlsafe_b64encode(json.dumps([offer.last_updated.isoformat(), str(offer.id)]).encode()).decode()


def _after_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        at, offer_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), UUID(offer_id)
    except (ValueError, TypeError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="Unknown cursor: use the one from the Link header.") from None


@router.get("/offers", response_model=list[OfferPublic], summary="This provider's offers, oldest change first",
            description="Paged by cursor: a `Link: <…>; rel=\"next\"` header points at the next page. "
                        "`_lastUpdated=gt<instant>` returns only offers changed since then.",
            responses=errors(400))
async def list_offers(
    request: Request,
    response: Response,
    session: SessionDep,
    provider: ProviderDep,
    runtime: RuntimeDep,
    offer_status: Annotated[OfferStatus | None, Query(alias="status")] = None,
    last_updated: Annotated[str | None, Query(alias="_lastUpdated")] = None,
    count: Annotated[int | None, Query(alias="_count", ge=1, le=1000,
                                       description="Page size; at most the configured maximum is returned")] = None,
    cursor: Annotated[str | None, Query()] = None,
) -> list[OfferPublic]:
    settings: NotifySettings = runtime.settings  # type: ignore[assignment]
    limit = min(count or settings.page_size_max, settings.page_size_max)
    statement = select(Offer).where(Offer.organisation_id == provider.id)
    if offer_status is not None:
        statement = statement.where(Offer.status == offer_status)
    if last_updated:
        try:
            statement = statement.where(last_updated_condition(col(Offer.last_updated), last_updated))
        except InvalidSearch as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    if cursor:
        at, after_id = _after_cursor(cursor)
        statement = statement.where(
            or_(col(Offer.last_updated) > at, and_(col(Offer.last_updated) == at, col(Offer.id) > after_id))
        )
    rows = (
        await session.exec(statement.order_by(col(Offer.last_updated), col(Offer.id)).limit(limit + 1))
    ).all()
    page = rows[:limit]
    if len(rows) > limit:
        next_url = request.url.include_query_params(cursor=_cursor(page[-1]))
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return [OfferPublic.of(o) for o in page]


@router.get("/offers/{offer_id}", response_model=OfferPublic, summary="One of this provider's offers",
            responses=errors(404))
async def read_offer(offer_id: UUID, session: SessionDep, provider: ProviderDep) -> OfferPublic:
    return OfferPublic.of(await own_offer(session, provider, offer_id))


@router.post("/offers/{offer_id}/accept", response_model=OfferPublic, summary="Accept an offer", responses=errors(404, 409),
             description="Accepting again is harmless. An offer that was declined, expired or withdrawn cannot be "
                         "accepted (409).")
async def accept_offer(offer_id: UUID, runtime: RuntimeDep,
                       session: SessionDep, provider: ProviderDep) -> OfferPublic:
    async with runtime.db.transaction(session):
        offer = await own_offer(session, provider, offer_id)
        await offers.accept_offer(session, offer, provider, now=utcnow())
    return OfferPublic.of(offer)


@router.post("/offers/{offer_id}/decline", response_model=OfferPublic,
             summary="Decline an offer with a coded reason; the case goes on to the next service",
             responses=errors(404, 409),
             description="Declining again is harmless. An offer that was accepted, expired or withdrawn cannot be "
                         "declined (409).")
async def decline_offer(offer_id: UUID, body: DeclineRequest, runtime: RuntimeDep,
                        session: SessionDep, provider: ProviderDep) -> OfferPublic:
    async with runtime.db.transaction(session):
        offer = await own_offer(session, provider, offer_id)
        await offers.decline_offer(session, offer, provider, reason=body.reason,
                                   text=body.text.strip() if body.text else None, now=utcnow())
    return OfferPublic.of(offer)


def release_decision(offer: Offer, case: CaseConsent | None, now: datetime) -> tuple[int, str]:
    """May the handoff for this offer be released now? (HTTP status, reason): 200 means yes.

    Checked when the provider asks, and again just before the release is recorded: consent can be
    withdrawn between the two.
    """
    if offer.status == OfferStatus.withdrawn or offer.stop_contact_reason is not None:
        reason = offer.stop_contact_reason or offer.status_reason or "withdrawn"
        return 410, f"The offer was withdrawn ({reason}): do not make contact."
    if offer.status != OfferStatus.accepted:
        return 409, f"The offer is {offer.status}: accept it before reading the handoff."
    return release_verdict(known_consent(case), service_type=offer.service_type, by_and_for=bool(offer.by_and_for),
                           organisation_id=offer.organisation_id, now=now)


async def ask_intake_for_handoff(runtime: RuntimeDep, offer: Offer, consent_version: int) -> Any:
    """Intake's answer; while intake has not yet heard of the acceptance (it crosses the bus), ask again
    a few times before answering the provider with a 503 and a Retry-After."""
    settings: NotifySettings = runtime.settings  # type: ignore[assignment]
    for attempt in range(HANDOFF_ATTEMPTS):
        response = await runtime.http.get(
            f"{settings.intake_url}/internal/referrals/{offer.case_id}/handoff",
            params={"organisation_id": offer.organisation_id, "service_type": offer.service_type,
                    "by_and_for": bool(offer.by_and_for), "consent_version": consent_version},
            headers=settings.service_headers(),
        )
        not_yet = (response.status_code == status.HTTP_409_CONFLICT
                   and response.headers.get("content-type") == PROBLEM_JSON
                   and response.json().get("type") == NOT_ACCEPTED)
        if not not_yet or attempt == HANDOFF_ATTEMPTS - 1:
            return response
        await asyncio.sleep(HANDOFF_RETRY_SECONDS * (attempt + 1))
    raise AssertionError("unreachable")


@router.get("/offers/{offer_id}/handoff",
            summary="The identifying handoff, once accepted and while consent (or a safeguarding basis) allows",
            responses=errors(403, 404, 409, 410),
            description="Safe-contact rules come first: `do_not_contact` and `no_voicemail` are flags a system can "
                        "act on. 409 before acceptance, 403 outside the consent's scope, 410 once withdrawn.")
async def read_handoff(offer_id: UUID, runtime: RuntimeDep,
                       session: SessionDep, provider: ProviderDep) -> Handoff:
    settings: NotifySettings = runtime.settings  # type: ignore[assignment]
    offer = await own_offer(session, provider, offer_id)
    case = await session.get(CaseConsent, offer.case_id)
    code, reason = release_decision(offer, case, utcnow())
    consent_version = known_consent(case).version
    await end_read(session)  # no connection held while intake is asked
    if code != 200:
        raise HTTPException(code, detail=reason)
    # Intake, which holds the data and the authoritative consent, decides again for itself: notify's copy
    # may not yet have heard of a withdrawal.
    response = await ask_intake_for_handoff(runtime, offer, consent_version)
    refusal = response.json() if response.headers.get("content-type") == PROBLEM_JSON else {}
    if refusal.get("type") == NOT_ACCEPTED:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "2"},
                            detail="The acceptance is still on its way to intake: ask again in a moment.")
    if refusal.get("type") == CONSENT_REFUSAL:
        raise HTTPException(response.status_code, detail=refusal["detail"])
    if response.status_code != 200:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="The handoff cannot be read right now.")
    details = response.json()
    # What intake released on: its own consent version and basis, which the audit keeps.
    released_on = details.pop("consent_version", consent_version)
    reason = details.pop("release_basis", None) or reason
    async with runtime.db.transaction(session):
        offer = await own_offer(session, provider, offer_id)
        now = utcnow()
        code, notify_reason = release_decision(offer, await session.get(CaseConsent, offer.case_id), now)
        if code == 200:
            if offer.handoff_released_at is None:
                offer.handoff_released_at = now
                session.add(offer)
            record(session, provider, "release-handoff", case_id=offer.case_id,
                   detail=f"offer {offer.id}; to {offer.organisation_id}; {reason}; consent version {released_on}",
                   reason=reason)
    if code != 200:
        raise HTTPException(code, detail=notify_reason)
    # Safe-contact rules first and plainly: they decide whether and how to make contact at all.
    return Handoff(
        safe_contact=SafeContact(**safe_contact(details.pop("safe_contact", None), details.pop("safe_contact_rules", None))),
        offer_id=offer.id,
        case_id=offer.case_id,
        release_basis=reason,
        survivor=details,
    )


@router.post("/offers/{offer_id}/outcomes", response_model=OfferPublic,
             summary="Report what happened after accepting; the referrer's Task shows it",
             responses=errors(404, 409),
             description="Outcomes only move forwards (unable to contact → contact made → survivor engaged or "
                         "declined support → closed; steps may be skipped) and `closed` is final: a step back is "
                         "a 409. Reporting the current outcome again changes nothing.")
async def report_outcome(offer_id: UUID, body: OutcomeRequest, runtime: RuntimeDep,
                         session: SessionDep, provider: ProviderDep) -> OfferPublic:
    async with runtime.db.transaction(session):
        offer = await own_offer(session, provider, offer_id)
        await offers.report_outcome(session, offer, provider, outcome=body.outcome, now=utcnow())
    return OfferPublic.of(offer)
