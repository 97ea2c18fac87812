"""The router's bus handlers: route each referral once, follow its offers, re-offer along the stored
ranking when one is declined or expires, and tell ops when the ranking runs out.

The directory copy is read *before* the database transaction opens (it may need an HTTP call), and
the decision, the inbox record and the outgoing events commit together (``Database.run_batch``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from sqlmodel.ext.asyncio.session import AsyncSession

from services.router.directory_client import DirectoryCache, DirectoryUnavailable
from services.router.domain import (
    Decision,
    DirectoryIndex,
    Lane,
    NoOffer,
    Outcome,
    TaskAnswer,
    next_in_lane,
    resolve_case_area,
    route,
    task_answer,
)
from services.router.index import covering_services
from services.router.settings import RouterSettings
from services.router.store import (
    CaseState,
    RoutedCase,
    RoutingDecision,
    add_decision,
    case_for_update,
    insert_new_case,
    open_offer_counts,
    record_offer,
)
from shared.bus import Delivery
from shared.events import (
    CaseEscalated,
    CaseRouted,
    CaseStatus,
    CaseSummary,
    ConsentState,
    ConsentStatus,
    ConsentUpdated,
    Event,
    OfferAccepted,
    OfferDeclined,
    OfferEvent,
    OfferExpired,
    OfferMade,
    OfferWithdrawn,
    ReferralCancelled,
    ReferralReceived,
    RiskBand,
    RoutedService,
    TaskStatus,
    utcnow,
)
from shared.metrics import CASES_ROUTED
from shared.outbox import enqueue
from shared.service import Runtime
from shared.telemetry import safe_attributes, tracer

log = logging.getLogger(__name__)

REFERRALS = "router-referrals"
OFFERS = "router-offers"
CASE_CHANGES = "router-case-changes"


@dataclass
class Router:
    """What the handlers and the API share in one router process."""

    settings: RouterSettings
    cache: DirectoryCache


def decision_values(
    case_id: UUID, decision: Decision, *, kind: str, trigger: str | None = None
) -> dict[str, Any]:
    """A decision as ``RoutingDecision`` column values (a new id), stored with ``add_decision``."""
    return {
        "id": uuid4(),
        "case_id": case_id,
        "kind": kind,
        "trigger": trigger,
        "outcome": decision.outcome,
        "offer_to": [s.model_dump(mode="json") for s in decision.offer_to],
        "lanes": {lane: [s.service_id for s in services] for lane, services in decision.lanes.items()},
        "excluded": decision.excluded,
        "passed_over": decision.passed_over,
        "notes": decision.notes,
        "escalation": decision.escalation,
        "no_offer_reason": decision.no_offer_reason,
        "advice": decision.advice,
        "rule_version": decision.rule_version,
        "directory_version": decision.directory_version,
        "created_at": utcnow(),
    }


def decision_row(
    case_id: UUID, decision: Decision, *, kind: str, trigger: str | None = None
) -> RoutingDecision:
    return RoutingDecision(**decision_values(case_id, decision, kind=kind, trigger=trigger))


def no_offer_status(case_id: UUID, decision: Decision, *, high: bool, consent: ConsentState) -> CaseStatus:
    """What the referrer's Task says when no offer is made: a final ``rejected`` where no offer will be made,
    else ``requested`` with why (``task_answer``), the helpline to give as advice, and the decision's summary."""
    answer = task_answer(decision, high=high) or TaskAnswer(
        TaskStatus.requested,
        "escalated",
        "no offer made: escalated to ops",
        NoOffer.no_eligible_service,
        decision.no_offer_reason or "no offer made",
    )
    return CaseStatus(
        case_id=case_id,
        status=answer.status,
        business_status=answer.text,
        business_status_code=answer.code,
        status_reason=answer.reason,
        status_reason_code=answer.reason_code,
        routing_summary=decision.referrer_summary or None,
        consent_version=consent.version,
    )


async def decide(
    session: AsyncSession,
    router: Router,
    *,
    summary: CaseSummary,
    consent: ConsentState,
    index: DirectoryIndex,
) -> tuple[Decision, list[str]]:
    """Run the rules for a case with this area's protocol and the current open offers (no writes)."""
    area = resolve_case_area(summary, index)
    open_offers = await open_offer_counts(session, index.capped(covering_services(area, index)))
    with tracer().start_as_current_span("match") as span:
        protocol = router.settings.protocol_for(area.codes)
        decision = route(
            summary, consent, index, open_offers=open_offers, now=utcnow(), sla_hours=protocol.sla_hours
        )
        span.set_attributes(safe_attributes(pathways__outcome=decision.outcome.value))
    return decision, list(area.codes)


async def route_case(
    session: AsyncSession,
    router: Router,
    *,
    case_id: UUID,
    summary: CaseSummary,
    consent: ConsentState,
    index: DirectoryIndex,
    case: RoutedCase | None = None,
    trigger: str | None = None,
) -> None:
    """Decide, store the decision and its ranking, and enqueue the offers, status and escalation.

    ``case`` is given when a case that waited (no consent) is routed again: a new decision, same case.
    Without it the case is new: stored unless it is stored already (the same case re-sent under a new
    event id), in which case nothing is done."""
    decision, codes = await decide(session, router, summary=summary, consent=consent, index=index)
    # The case carries its sector and what it resolved to (every candidate with its share), never more.
    summary = summary.model_copy(update={"area": decision.area})
    state = {
        Outcome.routed: CaseState.routed,
        Outcome.fallback: CaseState.fallback,
        Outcome.no_offer: CaseState.no_offer,
    }[decision.outcome]
    lanes = {lane: [s.model_dump(mode="json") for s in services] for lane, services in decision.lanes.items()}
    if case is None:
        now = utcnow()
        stored = await insert_new_case(
            session,
            {
                "case_id": case_id,
                "state": state,
                "risk_band": summary.risk_band,
                "area_codes": codes,
                "summary": summary.model_dump(mode="json"),
                "consent": consent.model_dump(mode="json"),
                "lanes": lanes,
                "offered": [s.service_id for s in decision.offer_to],
                "accepted": [],
                "failed_offers": 0,
                "rule_version": decision.rule_version,
                "created_at": now,
                "updated_at": now,
            },
        )
        if not stored:
            return  # routed already (the same case re-sent under a new event id)
    else:
        case.state = state
        case.consent = consent.model_dump(mode="json")
        case.lanes = lanes
        case.offered = [*case.offered, *(s.service_id for s in decision.offer_to)]
        case.rule_version = decision.rule_version
        case.updated_at = utcnow()
        session.add(case)
    CASES_ROUTED.labels(decision.outcome.value).inc()
    row = decision_values(case_id, decision, kind="re-route" if trigger else "initial", trigger=trigger)
    add_decision(session, row)
    if decision.offer_to:
        enqueue(
            session,
            CaseRouted(
                case_id=case_id,
                decision_id=row["id"],
                summary=summary,
                consent=consent,
                offer_to=tuple(decision.offer_to),
                referrer_note=decision.referrer_note,
                routing_summary=decision.referrer_summary or None,
            ),
        )
    else:
        enqueue(
            session,
            no_offer_status(case_id, decision, high=summary.risk_band is RiskBand.high, consent=consent),
        )
    if decision.escalation:
        enqueue(session, CaseEscalated(case_id=case_id, reason=decision.escalation))


async def reoffer(
    session: AsyncSession,
    router: Router,
    *,
    event: OfferEvent,
    index: DirectoryIndex | None,
) -> None:
    """An offer was declined or expired: offer the next service in the same lane of the stored ranking,
    or, when that lane is exhausted, tell ops. Ops also hears once the case reaches the area's count
    of failed offers, while re-offers carry on."""
    case = await case_for_update(session, event.case_id)
    if case is None:
        log.warning("router: %s for a case this router did not route; nothing to re-offer", event.subject)
        return
    if case.state == CaseState.closed:
        return
    case.failed_offers += 1
    case.updated_at = utcnow()
    what = "declined" if isinstance(event, OfferDeclined) else "expired without an answer"
    lanes = {
        Lane(lane): [RoutedService.model_validate(s) for s in services]
        for lane, services in case.lanes.items()
    }
    lane = next(
        (name for name, services in lanes.items() if any(s.service_id == event.service_id for s in services)),
        None,
    )
    # Notify sends a coded reason only (never the provider's free text).
    trigger = f"offer to {event.service_id} {what}" + (f" ({event.reason})" if event.reason else "")
    summary = CaseSummary.model_validate(case.summary)
    protocol = router.settings.protocol_for(case.area_codes)
    if case.failed_offers == protocol.escalate_after_failed_offers:
        enqueue(
            session,
            CaseEscalated(
                case_id=case.case_id, reason=f"{case.failed_offers} offers declined or expired for this case"
            ),
        )
    # Once a service accepted the case, a declined parallel offer is not chased; the high-risk IDVA and
    # MARAC routes are, because each of them matters in its own right.
    settled = bool(case.accepted) and lane not in (Lane.idva, Lane.marac)
    nxt, passed = (
        (None, {})
        if lane is None or settled
        else next_in_lane(
            lanes[lane],
            offered=case.offered,
            index=index,
            open_offers=await open_offer_counts(
                session, index.capped(routed.service_id for routed in lanes[lane]) if index else []
            ),
            consent=ConsentState.model_validate(case.consent),
            now=utcnow(),
        )
    )
    decision = Decision(
        outcome=Outcome.routed,
        passed_over=passed,
        notes=[trigger],
        directory_version=index.version if index else "",
    )
    if nxt is not None:
        assert lane is not None
        decision.offer_to = [
            nxt.model_copy(update={"reasons": (*nxt.reasons, f"next in the ranking: {trigger}")})
        ]
        decision.lanes = {lane: [nxt]}
        case.offered = [*case.offered, nxt.service_id]
        row = decision_values(case.case_id, decision, kind="re-offer", trigger=trigger)
        enqueue(
            session,
            CaseRouted(
                case_id=case.case_id,
                decision_id=row["id"],
                summary=summary,
                consent=ConsentState.model_validate(case.consent),
                offer_to=tuple(decision.offer_to),
            ),
        )
    elif settled:
        decision.outcome = Outcome.no_offer
        decision.notes.append(f"no re-offer: the case was accepted by {', '.join(case.accepted)}")
        row = decision_values(case.case_id, decision, kind="settled", trigger=trigger)
    else:
        lane_words = f"the {lane} ranking" if lane else "the ranking"
        decision.outcome = Outcome.no_offer
        decision.escalation = (
            f"{lane_words} is exhausted: every service declined, expired or cannot take the case"
        )
        row = decision_values(case.case_id, decision, kind="exhausted", trigger=trigger)
        if decision.escalation:
            case.state = CaseState.exhausted
            enqueue(session, CaseEscalated(case_id=case.case_id, reason=decision.escalation))
            enqueue(
                session,
                CaseStatus(
                    case_id=case.case_id,
                    status=TaskStatus.requested,
                    business_status="escalated to ops",
                    status_reason=f"{trigger}; {decision.escalation}",
                ),
            )
    add_decision(session, row)
    session.add(case)


def register(runtime: Runtime, router: Router) -> None:

    async def held_copy() -> DirectoryIndex | None:
        # A re-offer follows the stored ranking; a fresh copy only refines it (capacity, pauses).
        try:
            return await router.cache.current()
        except DirectoryUnavailable:
            return None

    async def on_referral(event: Event, _delivery: Delivery) -> Callable[[AsyncSession], Awaitable[None]]:
        assert isinstance(event, ReferralReceived)
        # Outside the transaction; with no copy and no directory this raises and the case is retried.
        index = await router.cache.current()

        async def work(session: AsyncSession) -> None:
            # Unless routed already (the same case re-sent under a new event id): ``route_case`` says.
            await route_case(
                session,
                router,
                case_id=event.case_id,
                summary=event.summary,
                consent=event.consent,
                index=index,
            )

        return work

    async def on_offer(event: Event, _delivery: Delivery) -> Callable[[AsyncSession], Awaitable[None]]:
        assert isinstance(event, OfferEvent)
        index = await held_copy() if isinstance(event, OfferDeclined | OfferExpired) else None

        async def work(session: AsyncSession) -> None:
            await record_offer(
                session,
                offer_id=event.offer_id,
                case_id=event.case_id,
                service_id=event.service_id,
                open=isinstance(event, OfferMade),
            )
            if isinstance(event, OfferAccepted):
                case = await case_for_update(session, event.case_id)
                if case is not None and event.service_id not in case.accepted:
                    case.accepted = [*case.accepted, event.service_id]
                    session.add(case)
            elif isinstance(event, OfferDeclined | OfferExpired):
                await reoffer(session, router, event=event, index=index)

        return work

    async def on_case_change(event: Event, _delivery: Delivery) -> Callable[[AsyncSession], Awaitable[None]]:
        index = await held_copy() if isinstance(event, ConsentUpdated) else None

        async def work(session: AsyncSession) -> None:
            case = await case_for_update(session, event.case_id)  # type: ignore[attr-defined]
            if case is None and isinstance(event, ConsentUpdated):
                # The referral is on its way on another consumer: retry, so the change is not lost and
                # the case is never routed on the consent it replaced.
                raise LookupError("consent update for a case this router has not routed yet")
            if case is None or case.state == CaseState.closed:
                return
            if isinstance(event, ConsentUpdated) and not event.consent.newer_than(
                ConsentState.model_validate(case.consent)
            ):
                return  # intake numbered a later change already applied here: this one is history
            if isinstance(event, ReferralCancelled) or (
                isinstance(event, ConsentUpdated) and event.consent.status is ConsentStatus.withdrawn
            ):
                case.state = CaseState.closed  # notify withdraws the offers; the router offers no more
                case.updated_at = utcnow()
                session.add(case)
            elif isinstance(event, ConsentUpdated):
                if case.state == CaseState.no_offer:
                    # Consent now given for a case that waited for it: route it as a new decision.
                    if index is None:
                        raise DirectoryUnavailable("cannot route the case until the directory answers")
                    await route_case(
                        session,
                        router,
                        case_id=case.case_id,
                        summary=CaseSummary.model_validate(case.summary),
                        consent=event.consent,
                        index=index,
                        case=case,
                        trigger=f"consent updated: {event.consent.status}",
                    )
                else:
                    case.consent = event.consent.model_dump(mode="json")
                    session.add(case)

        return work

    # Each handler reads the directory copy outside the transaction, then returns its work: events
    # fetched together are routed in one transaction (``Runtime.consume_prepared``).
    runtime.consume_prepared(
        REFERRALS, [ReferralReceived.subject], on_referral, max_deliver=router.settings.referral_max_deliver
    )
    runtime.consume_prepared(
        OFFERS,
        [s.subject for s in (OfferMade, OfferAccepted, OfferDeclined, OfferExpired, OfferWithdrawn)],
        on_offer,
    )
    runtime.consume_prepared(
        CASE_CHANGES, [ReferralCancelled.subject, ConsentUpdated.subject], on_case_change
    )
