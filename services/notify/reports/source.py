"""Where the report figures come from: notify's own cases and offers (non-identifying summaries and
timestamps), and the router's gap-analysis counts over its internal route."""

from __future__ import annotations

import logging

import httpx
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notify.reports.figures import CaseFacts, GapFacts, OfferFacts
from services.notify.settings import NotifySettings
from services.notify.store import CaseConsent, Offer
from shared.events import CaseSummary

log = logging.getLogger(__name__)


async def data_version(session: AsyncSession) -> tuple[object, ...]:
    """Changes whenever a case or an offer does: the reports are rebuilt only then."""
    cases = (await session.exec(select(func.count(), func.max(CaseConsent.updated_at)))).one()
    offers = (await session.exec(select(func.count(), func.max(Offer.last_updated)))).one()
    return (*cases, *offers)


async def case_facts(session: AsyncSession) -> list[CaseFacts]:
    rows = (await session.exec(select(CaseConsent).where(col(CaseConsent.summary).is_not(None)))).all()
    return [CaseFacts(case_id=r.case_id, summary=CaseSummary.model_validate(r.summary),
                      referred_at=r.referred_at or r.consent_at) for r in rows]


async def offer_facts(session: AsyncSession) -> list[OfferFacts]:
    rows = (await session.exec(select(Offer))).all()
    return [OfferFacts(case_id=o.case_id, service_type=o.service_type, by_and_for=bool(o.by_and_for),
                       status=o.status, status_reason=o.status_reason, outcome=o.outcome,
                       assigned_by_ops=o.assigned_by is not None, accepted_at=o.accepted_at,
                       first_contact_at=o.first_contact_at) for o in rows]


async def gap_facts(http: httpx.AsyncClient, settings: NotifySettings) -> GapFacts | None:
    """The router's raw gap-analysis counts, or ``None`` while it cannot be reached (the page says so)."""
    try:
        response = await http.get(f"{settings.router_url}/internal/reports/geography",
                                  headers=settings.service_headers())
    except httpx.HTTPError as exc:
        log.warning("reports: the router could not be reached (%s)", type(exc).__name__)
        return None
    if response.status_code != 200:
        log.warning("reports: the router answered %d for the gap analysis", response.status_code)
        return None
    body = response.json()
    return GapFacts(names=body["names"], gaps=body["gaps"], areas=body["areas"])
