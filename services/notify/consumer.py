"""Notify's bus handlers: offers from routed cases, consent and cancellation stopping them, the ops queue."""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from sqlalchemy import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notify.domain import TaskView, still_permitted
from services.notify.offers import (
    NewOffers,
    announce_task,
    close_case,
    hold_back,
    known_consent,
    remember_case,
    remember_routing,
    stop_offers,
)
from services.notify.ops import purge_notes
from services.notify.settings import NotifySettings
from services.notify.store import OPEN_OFFER_STATUSES, CaseConsent, Escalation, EscalationStatus, Offer
from services.notify.webhooks import DeliverySettings
from shared.bus import Delivery
from shared.events import (
    CaseEscalated,
    CaseRouted,
    ConsentStatus,
    ConsentUpdated,
    Event,
    IdentifyingDataPurged,
    ReferralCancelled,
    ReferralReceived,
    utcnow,
)
from shared.service import Runtime
from shared.telemetry import safe_attributes, tracer

CONSENT_WITHDRAWN = "consent-withdrawn"
_INSERT_ESCALATION = insert(Escalation.__table__)  # type: ignore[attr-defined]
REFERRAL_CANCELLED = "referral-cancelled"


def register(runtime: Runtime, channels: DeliverySettings) -> None:
    """``channels``: the providers' delivery settings, shared with the webhook dispatcher."""
    settings: NotifySettings = runtime.settings  # type: ignore[assignment]

    async def on_referral(session: AsyncSession, event: Event, _delivery: Delivery) -> None:
        assert isinstance(event, ReferralReceived)
        # Known from the start, so that ops can assign a case the router could not place.
        await remember_case(
            session,
            event.case_id,
            consent=event.consent,
            stated_at=event.occurred_at,
            summary=event.summary,
            referred_at=event.occurred_at,
        )

    async def on_case_routed(session: AsyncSession, event: Event, _delivery: Delivery) -> None:
        assert isinstance(event, CaseRouted)
        now = utcnow()
        case = await remember_case(
            session, event.case_id, consent=event.consent, stated_at=event.occurred_at, summary=event.summary
        )
        await remember_routing(session, event)
        if case.closed_reason is not None:
            return  # cancelled or withdrawn while the router worked: nobody is offered anything
        # The router decided on its copy of the consent, which can be older than notify's: offer only
        # what the newest consent notify knows permits, and tell ops about any offer it held back.
        consent = known_consent(case)
        # Providers known to poll need nothing from the webhook dispatcher for their offers.
        polling = channels.known_to_poll(service.organisation_id for service in event.offer_to)
        offers = await NewOffers.for_case(
            session,
            settings,
            case_id=event.case_id,
            now=now,
            organisations=(service.organisation_id for service in event.offer_to),
            polling=polling,
        )
        made = []
        for service in event.offer_to:
            if not still_permitted(
                consent,
                service_type=service.service_type,
                by_and_for=bool(service.by_and_for),
                organisation_id=service.organisation_id,
                now=now,
            ):
                hold_back(session, event.case_id, service, consent)
                continue
            # The span is current while the offer's webhook is queued: the delivery continues this trace.
            with tracer().start_as_current_span("offer") as span:
                offer = offers.make(service=service, summary=event.summary, decision_id=event.decision_id)
                if offer is not None:
                    span.set_attributes(safe_attributes(pathways__offer_id=offer["id"]))
                    made.append(offer)
        await offers.write()
        if made:
            names = ", ".join(o["service_name"] for o in made)
            announce_task(
                session,
                event.case_id,
                TaskView.offered(names, event.referrer_note),
                now=now,
                routing_summary=event.routing_summary,
            )

    async def on_consent_updated(session: AsyncSession, event: Event, _delivery: Delivery) -> None:
        assert isinstance(event, ConsentUpdated)
        now = utcnow()
        case = await remember_case(session, event.case_id, consent=event.consent, stated_at=event.occurred_at)
        if case.consent_version > event.consent.version:
            return  # a later change is already known (and was acted on): this one is history
        withdrawn = event.consent.status is ConsentStatus.withdrawn
        closed_reason = case.closed_reason
        if withdrawn:
            closed_reason = closed_reason or CONSENT_WITHDRAWN
        elif closed_reason == CONSENT_WITHDRAWN:
            closed_reason = None  # consent given again: the case may be offered again
        if closed_reason != case.closed_reason:
            await close_case(session, event.case_id, closed_reason)
        # Any offer the consent no longer covers stops, whatever the new status: a narrower scope too.
        await stop_offers(
            session,
            settings,
            case_id=event.case_id,
            reason=CONSENT_WITHDRAWN,
            consent=event.consent,
            source=str(event.event_id),
            now=now,
        )
        if withdrawn:
            await _cancel_task_if_nothing_open(
                session,
                event,
                now,
                TaskView.stopped(CONSENT_WITHDRAWN, "consent withdrawn", "the survivor withdrew consent"),
            )

    async def on_cancelled(session: AsyncSession, event: Event, _delivery: Delivery) -> None:
        assert isinstance(event, ReferralCancelled)
        now = utcnow()
        case = await session.get(CaseConsent, event.case_id)
        if case is None:
            # Cancelled before notify heard of the referral: remember that, so no offer is ever made.
            case = CaseConsent(
                case_id=event.case_id,
                consent={"status": ConsentStatus.not_asked.value},
                consent_at=event.occurred_at,
            )
        case.closed_reason = REFERRAL_CANCELLED
        session.add(case)
        await stop_offers(
            session,
            settings,
            case_id=event.case_id,
            reason=REFERRAL_CANCELLED,
            consent=None,
            source=str(event.event_id),
            now=now,
        )
        await _cancel_task_if_nothing_open(
            session,
            event,
            now,
            TaskView.stopped(
                "cancelled",
                "cancelled by the referrer",
                event.reason or "the referrer cancelled the referral",
            ),
        )

    async def on_purged(session: AsyncSession, event: Event, _delivery: Delivery) -> None:
        assert isinstance(event, IdentifyingDataPurged)
        await purge_notes(session, event.case_id, rule=event.rule)

    async def on_escalated(session: AsyncSession, event: Event, _delivery: Delivery) -> None:
        assert isinstance(event, CaseEscalated)
        # One Core INSERT, no row object: nothing reads the row back in this transaction.
        await (await session.connection()).execute(
            _INSERT_ESCALATION,
            {
                "id": uuid4(),
                "case_id": event.case_id,
                "reason": event.reason[:300],
                "status": EscalationStatus.open,
                "created_at": event.occurred_at,
                "updated_at": event.occurred_at,
                "assigned_service_id": None,
                "assigned_by": None,
            },
        )

    runtime.consume("notify-referrals", [ReferralReceived.subject], on_referral)
    runtime.consume("notify-case-routed", [CaseRouted.subject], on_case_routed)
    runtime.consume("notify-consent", [ConsentUpdated.subject], on_consent_updated)
    runtime.consume("notify-cancellations", [ReferralCancelled.subject], on_cancelled)
    runtime.consume("notify-escalations", [CaseEscalated.subject], on_escalated)
    runtime.consume("notify-purges", [IdentifyingDataPurged.subject], on_purged)


async def _cancel_task_if_nothing_open(
    session: AsyncSession, event: ConsentUpdated | ReferralCancelled, now: datetime, view: TaskView
) -> None:
    """Tell the referrer the case stopped, unless an offer carries on (the MARAC on a safeguarding basis)."""
    await session.flush()
    still_open = (
        await session.exec(
            select(Offer).where(
                Offer.case_id == event.case_id,
                col(Offer.status).in_(OPEN_OFFER_STATUSES),
                col(Offer.stop_contact_reason).is_(None),
            )
        )
    ).first()
    if still_open is None:
        announce_task(session, event.case_id, view, now=now)
