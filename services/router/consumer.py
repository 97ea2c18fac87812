"""The router's bus handler: route each received referral once."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.router.directory_client import candidates_for
from services.router.domain import route
from services.router.settings import RouterSettings
from services.router.store import RoutingDecision
from shared.bus import Delivery
from shared.events import CaseEscalated, CaseRouted, CaseStatus, Event, ReferralReceived, TaskStatus, utcnow
from shared.outbox import enqueue
from shared.service import Runtime


def register(runtime: Runtime) -> None:
    settings: RouterSettings = runtime.settings  # type: ignore[assignment]

    async def on_referral(session: AsyncSession, event: Event, _delivery: Delivery) -> None:
        assert isinstance(event, ReferralReceived)
        if (await session.exec(select(RoutingDecision).where(RoutingDecision.case_id == event.case_id))).first():
            return  # routed already (the same case re-sent under a new event id)
        district = event.summary.postcode_district or ""
        candidates = await candidates_for(runtime.http, settings.directory_url, district)
        decision = route(event.summary, event.consent, candidates, now=utcnow())
        row = RoutingDecision(
            case_id=event.case_id,
            rule_version=decision.rule_version,
            offer_to=[s.model_dump(mode="json") for s in decision.offer_to],
            excluded=decision.excluded,
            escalation=decision.escalation,
        )
        session.add(row)
        if decision.offer_to:
            enqueue(
                session,
                CaseRouted(
                    case_id=event.case_id,
                    decision_id=row.id,
                    summary=event.summary,
                    consent=event.consent,
                    offer_to=tuple(decision.offer_to),
                ),
            )
        else:
            enqueue(
                session,
                CaseStatus(
                    case_id=event.case_id,
                    status=TaskStatus.requested,
                    business_status="no offer made",
                    status_reason=decision.no_offer_reason,
                ),
            )
        if decision.escalation:
            enqueue(session, CaseEscalated(case_id=event.case_id, reason=decision.escalation))

    runtime.consume("router-referrals", [ReferralReceived.subject], on_referral)
