"""Notify's bus handlers: turn each routed case into offers."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notify.domain import respond_by
from services.notify.settings import NotifySettings
from services.notify.store import CaseConsent, Offer
from shared.bus import Delivery
from shared.events import CaseRouted, CaseStatus, Event, OfferMade, RiskBand, TaskStatus, utcnow
from shared.outbox import enqueue
from shared.service import Runtime


def deadline_hours(settings: NotifySettings) -> dict[RiskBand, float]:
    return {
        RiskBand.high: settings.deadline_hours_high,
        RiskBand.medium: settings.deadline_hours_medium,
        RiskBand.standard: settings.deadline_hours_standard,
    }


def register(runtime: Runtime) -> None:
    settings: NotifySettings = runtime.settings  # type: ignore[assignment]
    hours = deadline_hours(settings)

    async def on_case_routed(session: AsyncSession, event: Event, _delivery: Delivery) -> None:
        assert isinstance(event, CaseRouted)
        now = utcnow()
        consent = await session.get(CaseConsent, event.case_id)
        if consent is None:
            session.add(CaseConsent(case_id=event.case_id, consent=event.consent.model_dump(mode="json")))
        summary = event.summary.model_dump(mode="json")
        for service in event.offer_to:
            offer = Offer(
                case_id=event.case_id,
                decision_id=event.decision_id,
                service_id=service.service_id,
                service_name=service.name,
                service_type=service.service_type,
                organisation_id=service.organisation_id,
                by_and_for=list(service.by_and_for),
                summary=summary,
                reasons=list(service.reasons),
                created_at=now,
                respond_by=respond_by(now, event.summary.risk_band, hours),
                last_updated=now,
            )
            session.add(offer)
            enqueue(
                session,
                OfferMade(
                    case_id=event.case_id,
                    offer_id=offer.id,
                    service_id=service.service_id,
                    organisation_id=service.organisation_id,
                ),
            )
        names = ", ".join(s.name for s in event.offer_to)
        enqueue(
            session,
            CaseStatus(case_id=event.case_id, status=TaskStatus.requested, business_status=f"offered to {names}"),
        )

    runtime.consume("notify-case-routed", [CaseRouted.subject], on_case_routed)
