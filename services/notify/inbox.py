"""The provider inbox: web pages for providers without an integration team, served by notify.

Every action goes through the provider API's own handlers (``services.notify.api``), so the pages follow
the same rules, state machines, consent checks and audit as the API: there is no second path. The
handoff is read from intake at view time through the same consent-gated release and never stored here.

Sign-in is with the organisation's own provider key (``shared.web.realm``); URLs carry opaque offer
ids only, titles name the kind of page, forms post and redirect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Form, HTTPException, Request, Response, status
from pydantic import ValidationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notify import api
from services.notify.domain import DeclineReason, Outcome
from services.notify.inbox_view import (
    ALWAYS,
    DECLINE_LABELS,
    FLAG_LABELS,
    OUTCOME_LABELS,
    deadline_text,
    next_outcomes,
    referrer_rows,
    stop_label,
    summary_rows,
    survivor_rows,
)
from services.notify.store import Offer, OfferStatus
from shared.auth import Caller
from shared.events import utcnow
from shared.service import RuntimeDep, SessionDep
from shared.web.pages import Pages
from shared.web.realm import WebRealm

CLOSED_SHOWN = 50
# A page, not an export: a provider with more open work than this uses the API (or answers some first).
OPEN_SHOWN = 500


async def verify_provider_key(request: Request, key: str, session: AsyncSession) -> Caller | None:
    """The provider API's own key check (same cache, same revocation), as a sign-in verifier."""
    try:
        return await api.require_provider(key, request, request.app.state.runtime)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            return None
        raise


INBOX = WebRealm(
    name="inbox",
    title="Provider inbox",
    prefix="/inbox",
    verify=verify_provider_key,
    pages=Pages([Path(__file__).parent / "templates"]),
    credential_label="Your organisation's Pathways key",
    credential_hint="The provider key your organisation was issued for Pathways. It is checked again on every page.",
)
ProviderWeb = Annotated[Caller, Depends(INBOX.signed_in)]
router = INBOX.router()


def _offer_context(offer: Offer) -> dict[str, object]:
    now = utcnow()
    return {
        "offer": offer,
        "summary": summary_rows(offer.summary),
        "deadline": deadline_text(offer.respond_by, now),
        "stopped": offer.status == OfferStatus.withdrawn or offer.stop_contact_reason is not None,
        "stop_label": stop_label(offer.stop_contact_reason or offer.status_reason),
        "outcome_label": OUTCOME_LABELS.get(Outcome(offer.outcome)) if offer.outcome else None,
        "next_outcomes": [(o.value, OUTCOME_LABELS[o]) for o in next_outcomes(offer.outcome)],
    }


@router.get("")
async def inbox(request: Request, session: SessionDep, provider: ProviderWeb) -> Response:
    """Offers awaiting a decision (soonest deadline first), accepted cases, and recently closed ones."""
    mine = select(Offer).where(Offer.organisation_id == provider.id)
    awaiting = (await session.exec(mine.where(Offer.status == OfferStatus.offered)
                                   .order_by(col(Offer.respond_by)).limit(OPEN_SHOWN))).all()
    accepted = (await session.exec(mine.where(Offer.status == OfferStatus.accepted)
                                   .order_by(col(Offer.last_updated).desc()).limit(OPEN_SHOWN))).all()
    closed = (await session.exec(
        mine.where(col(Offer.status).in_([OfferStatus.declined, OfferStatus.expired, OfferStatus.withdrawn]))
        .order_by(col(Offer.last_updated).desc()).limit(CLOSED_SHOWN))).all()
    return INBOX.pages.render(request, "inbox/home.html", {
        "awaiting": [_offer_context(o) for o in awaiting],
        "accepted": [_offer_context(o) for o in accepted],
        "closed": [_offer_context(o) for o in closed],
        "limit": OPEN_SHOWN,
    })


@router.get("/offers/{offer_id}")
async def offer_page(offer_id: UUID, request: Request, session: SessionDep, provider: ProviderWeb) -> Response:
    offer = await api.own_offer(session, provider, offer_id)
    return INBOX.pages.render(request, "inbox/offer.html", {
        **_offer_context(offer),
        "decline_reasons": [(r.value, DECLINE_LABELS[r]) for r in DeclineReason],
    })


@router.post("/offers/{offer_id}/accept")
async def accept(offer_id: UUID, request: Request, runtime: RuntimeDep, session: SessionDep,
                 provider: ProviderWeb) -> Response:
    await api.accept_offer(offer_id, runtime, session, provider)
    INBOX.flash(request, "Offer accepted. Read the safe-contact instructions before anything else.")
    return INBOX.redirect(f"{INBOX.prefix}/offers/{offer_id}/handoff")


@router.post("/offers/{offer_id}/decline")
async def decline(offer_id: UUID, request: Request, runtime: RuntimeDep, session: SessionDep, provider: ProviderWeb,
                  reason: Annotated[str, Form()] = "", text: Annotated[str, Form(max_length=500)] = "") -> Response:
    try:
        body = api.DeclineRequest(reason=reason, text=text or None)  # type: ignore[arg-type]
    except ValidationError:
        raise HTTPException(422,
                            detail="Choose one of the reasons offered; for \"another reason\", say which in the "
                                   "box (about your service, never about the survivor). Nothing was changed.") from None
    await api.decline_offer(offer_id, body, runtime, session, provider)
    INBOX.flash(request, "Offer declined. The case goes on to the next service.")
    return INBOX.redirect(INBOX.prefix)


@router.get("/offers/{offer_id}/handoff")
async def handoff(offer_id: UUID, request: Request, runtime: RuntimeDep, session: SessionDep,
                  provider: ProviderWeb) -> Response:
    """The handoff, released by intake now (consent checked at release) and shown safe-contact first."""
    try:
        released = await api.read_handoff(offer_id, runtime, session, provider)
    except HTTPException as exc:
        if exc.status_code not in (status.HTTP_403_FORBIDDEN, status.HTTP_410_GONE):
            raise
        offer = await api.own_offer(session, provider, offer_id)
        return INBOX.pages.render(request, "inbox/handoff_gone.html", {
            **_offer_context(offer), "reason": str(exc.detail)}, status_code=exc.status_code)
    offer = await api.own_offer(session, provider, offer_id)
    safe = released.safe_contact
    return INBOX.pages.render(request, "inbox/handoff.html", {
        **_offer_context(offer),
        "safe": safe,
        "flags": [FLAG_LABELS.get(f, f) for f in safe.flags],  # type: ignore[call-overload]
        "always": ALWAYS,
        "survivor": survivor_rows(released.survivor),
        "referrer": referrer_rows(released.survivor),
        "release_basis": released.release_basis,
    })


@router.post("/offers/{offer_id}/outcomes")
async def outcome(offer_id: UUID, request: Request, runtime: RuntimeDep, session: SessionDep, provider: ProviderWeb,
                  value: Annotated[str, Form(alias="outcome")] = "") -> Response:
    try:
        body = api.OutcomeRequest(outcome=value)  # type: ignore[arg-type]
    except ValidationError:
        raise HTTPException(422,
                            detail="Choose one of the outcomes offered. Nothing was changed.") from None
    await api.report_outcome(offer_id, body, runtime, session, provider)
    INBOX.flash(request, f"Recorded: {OUTCOME_LABELS[body.outcome].lower()}.")
    return INBOX.redirect(f"{INBOX.prefix}/offers/{offer_id}")
