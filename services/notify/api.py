"""The provider polling API: offers, acceptance, and the consent-gated handoff."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel
from sqlmodel import col, select

from services.notify.settings import NotifySettings
from services.notify.store import CaseConsent, Offer, OfferStatus
from shared.audit import record
from shared.auth import Caller, CallerKind, PresentedKey, hash_api_key
from shared.consent import consent_covers
from shared.events import CaseStatus, ConsentState, ConsentStatus, OfferAccepted, TaskStatus, utcnow
from shared.outbox import enqueue
from shared.service import RuntimeDep, SessionDep

router = APIRouter(tags=["provider"])


class OfferPublic(BaseModel):
    id: UUID
    case_id: UUID
    service_id: str
    service_name: str
    service_type: str
    status: str
    summary: dict[str, Any]
    reasons: list[str]
    created_at: datetime
    respond_by: datetime
    last_updated: datetime
    links: dict[str, str]

    @classmethod
    def of(cls, offer: Offer) -> OfferPublic:
        return cls(
            **offer.model_dump(include=set(cls.model_fields) - {"links"}),
            links={
                "self": f"/offers/{offer.id}",
                "accept": f"/offers/{offer.id}/accept",
                "handoff": f"/offers/{offer.id}/handoff",
            },
        )


async def require_provider(key: PresentedKey, request: Request, runtime: RuntimeDep) -> Caller:
    """A provider, identified by its API key as the directory knows it (cached briefly)."""
    settings: NotifySettings = runtime.settings  # type: ignore[assignment]
    cache: dict[str, tuple[float, Caller]] = request.app.state.provider_keys
    digest = hash_api_key(key)
    hit = cache.get(digest)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    response = await runtime.http.post(
        f"{settings.directory_url}/internal/providers/authenticate",
        json={"api_key": key},
        headers={"Authorization": f"Bearer {settings.service_token.get_secret_value()}"},
    )
    if response.status_code == 404:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Unknown API key.",
                            headers={"WWW-Authenticate": "Bearer"})
    if response.status_code != 200:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="Cannot check credentials right now.")
    caller = Caller(CallerKind.provider, response.json()["organisation_id"])
    cache[digest] = (time.monotonic() + settings.provider_key_cache_seconds, caller)
    return caller


ProviderDep = Annotated[Caller, Depends(require_provider)]


async def own_offer(session: SessionDep, provider: Caller, offer_id: UUID) -> Offer:
    offer = await session.get(Offer, offer_id)
    # Another provider's offer is "not found": offers cannot be probed.
    if offer is None or offer.organisation_id != provider.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No offer with id '{offer_id}'.")
    return offer


@router.get("/offers", response_model=list[OfferPublic], summary="This provider's offers")
async def list_offers(
    session: SessionDep, provider: ProviderDep, offer_status: Annotated[OfferStatus | None, Query(alias="status")] = None
) -> list[OfferPublic]:
    statement = select(Offer).where(Offer.organisation_id == provider.id).order_by(col(Offer.created_at), col(Offer.id))
    if offer_status is not None:
        statement = statement.where(Offer.status == offer_status)
    return [OfferPublic.of(o) for o in (await session.exec(statement)).all()]


@router.get("/offers/{offer_id}", response_model=OfferPublic)
async def read_offer(offer_id: UUID, session: SessionDep, provider: ProviderDep) -> OfferPublic:
    return OfferPublic.of(await own_offer(session, provider, offer_id))


@router.post("/offers/{offer_id}/accept", response_model=OfferPublic, summary="Accept an offer")
async def accept_offer(offer_id: UUID, runtime: RuntimeDep, provider: ProviderDep) -> OfferPublic:
    async with runtime.db.transaction() as session:
        offer = await own_offer(session, provider, offer_id)
        if offer.status == OfferStatus.accepted:
            return OfferPublic.of(offer)  # accepting twice is harmless
        if offer.status != OfferStatus.offered:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"The offer is {offer.status}; it cannot be accepted.")
        now = utcnow()
        offer.status = OfferStatus.accepted
        offer.last_updated = now
        session.add(offer)
        enqueue(
            session,
            OfferAccepted(case_id=offer.case_id, offer_id=offer.id, service_id=offer.service_id,
                          organisation_id=offer.organisation_id),
        )
        enqueue(
            session,
            CaseStatus(case_id=offer.case_id, status=TaskStatus.accepted,
                       business_status=f"accepted by {offer.service_name}", occurred_at=now),
        )
        record(session, provider, "accept-offer", case_id=offer.case_id, detail=f"offer {offer.id}")
    return OfferPublic.of(offer)


@router.get("/offers/{offer_id}/handoff", summary="The identifying handoff, once accepted and while consent allows")
async def read_handoff(offer_id: UUID, runtime: RuntimeDep, provider: ProviderDep) -> dict[str, Any]:
    settings: NotifySettings = runtime.settings  # type: ignore[assignment]
    async with runtime.db.session() as session:
        offer = await own_offer(session, provider, offer_id)
        if offer.status != OfferStatus.accepted:
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail=f"The offer is {offer.status}: accept it before reading the handoff."
            )
        case_consent = await session.get(CaseConsent, offer.case_id)
    consent = ConsentState.model_validate(case_consent.consent if case_consent else {"status": "not-asked"})
    if consent.status is ConsentStatus.withdrawn:
        raise HTTPException(status.HTTP_410_GONE, detail="The survivor withdrew consent: do not make contact.")
    permitted, reason = consent_covers(
        consent,
        service_type=offer.service_type,
        by_and_for=bool(offer.by_and_for),
        organisation_id=offer.organisation_id,
        now=utcnow(),
    )
    if not permitted:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"The handoff cannot be released: {reason}.")
    response = await runtime.http.get(
        f"{settings.intake_url}/internal/referrals/{offer.case_id}/handoff",
        params={"organisation_id": offer.organisation_id},
        headers={"Authorization": f"Bearer {settings.service_token.get_secret_value()}"},
    )
    if response.status_code != 200:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="The handoff cannot be read right now.")
    details = response.json()
    async with runtime.db.transaction() as session:
        record(session, provider, "read-handoff", case_id=offer.case_id, detail=f"offer {offer.id}; {reason}")
    # Safe-contact rules first and plainly: they decide whether and how to make contact at all.
    return {
        "safe_contact": details.pop("safe_contact", None),
        "offer_id": str(offer.id),
        "case_id": str(offer.case_id),
        "release_basis": reason,
        "survivor": details,
    }
