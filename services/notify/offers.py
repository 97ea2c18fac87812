"""Notify's service functions: every change to an offer goes through here, in the caller's transaction,
together with the events it announces, the webhook it queues and the audit record it leaves."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Executable, bindparam, case, insert, null, union_all, update
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notify.domain import (
    CONTACT_OUTCOMES,
    OFFER_STATES,
    OUTCOME_STATES,
    DeclineReason,
    Outcome,
    TaskView,
    WebhookEvent,
    respond_by,
    still_permitted,
    task_for_outcome,
    webhook_payload,
)
from services.notify.settings import NotifySettings
from services.notify.store import (
    OPEN_OFFER_STATUSES,
    CaseConsent,
    CaseState,
    Offer,
    OfferStatus,
    RoutingRecord,
    WebhookDelivery,
    WebhookEndpointState,
    WebhookStatus,
    upsert,
)
from services.notify.webhook_handover import lease_for_handover
from shared.audit import record
from shared.auth import Caller, CallerKind
from shared.events import (
    CaseEscalated,
    CaseRouted,
    CaseStatus,
    CaseSummary,
    ConsentState,
    ConsentStatus,
    OfferAccepted,
    OfferContactStopped,
    OfferDeclined,
    OfferExpired,
    OfferMade,
    OfferWithdrawn,
    RoutedService,
    utcnow,
)
from shared.firewall import reasons_for, summary_for
from shared.outbox import enqueue
from shared.state_machine import IllegalTransition
from shared.telemetry import stored_context

NOTIFY = Caller(CallerKind.service, "notify")
# Set in a session's ``info`` when its transaction queues a webhook to send: its commit wakes the dispatcher.
WEBHOOKS_QUEUED = "notify_webhooks_queued"


def announce_task(
    session: AsyncSession,
    case_id: UUID,
    view: TaskView,
    *,
    now: datetime,
    outputs: tuple[str, ...] = (),
    routing_summary: str | None = None,
) -> None:
    """Tell the referrer's Task (``case.status``) where the case stands (and, with the first offers, the
    router's summary of its decision)."""
    enqueue(
        session,
        CaseStatus(
            case_id=case_id,
            status=view.status,
            business_status=view.text,
            business_status_code=view.code,
            status_reason=view.reason,
            outputs=outputs,
            routing_summary=routing_summary,
            occurred_at=now,
        ),
    )


def webhook_row(
    settings: NotifySettings,
    *,
    offer_id: UUID,
    organisation_id: str,
    case_id: UUID,
    event: WebhookEvent,
    source: str,
    now: datetime,
    status: WebhookStatus = WebhookStatus.pending,
) -> dict[str, Any]:
    """A webhook delivery (a ``WebhookDelivery`` row's values), carrying the current trace: pending, or
    not applicable when the organisation is known to poll."""
    return {
        "id": f"msg_{uuid4().hex}",
        "source_key": f"{event.value}:{offer_id}:{source}",
        "organisation_id": organisation_id,
        "event_type": event.value,
        "offer_id": offer_id,
        "case_id": case_id,
        "payload": webhook_payload(event, offer_id=offer_id, base_url=settings.public_url, at=now),
        "status": status.value,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
        "last_attempt_at": None,
        "last_error": None,
        "delivered_at": None,
        "trace_context": stored_context(),
    }


def queue_webhook(
    session: AsyncSession,
    settings: NotifySettings,
    offer: Offer,
    event: WebhookEvent,
    *,
    source: str,
    now: datetime,
) -> None:
    """Queue a webhook for the offer's provider; the dispatcher decides whether it has an endpoint."""
    session.add(
        WebhookDelivery(
            **webhook_row(
                settings,
                offer_id=offer.id,
                organisation_id=offer.organisation_id,
                case_id=offer.case_id,
                event=event,
                source=source,
                now=now,
            )
        )
    )
    session.info[WEBHOOKS_QUEUED] = True


async def case_record(session: AsyncSession, case_id: UUID) -> CaseConsent | None:
    return await session.get(CaseConsent, case_id)


@cache
def _remember_case_statement(dialect: str, columns: frozenset[str]) -> Executable:
    """The upsert of ``remember_case`` for the columns given, built once: a statement built per event would
    cost more to build and to look up in SQLAlchemy's compiled cache than to run."""
    table = CaseConsent.__table__  # type: ignore[attr-defined]
    statement = upsert(dialect, table)
    newer = table.c.consent_version < statement.excluded.consent_version
    changes = {
        name: case((newer, statement.excluded[name]), else_=table.c[name])
        for name in ("consent", "consent_version", "consent_at")
    }
    changes.update(
        {name: statement.excluded[name] for name in columns if name not in changes and name != "case_id"}
    )
    return statement.on_conflict_do_update(index_elements=[table.c.case_id], set_=changes).returning(
        table.c.consent, table.c.consent_version, table.c.closed_reason
    )


async def remember_case(
    session: AsyncSession,
    case_id: UUID,
    *,
    consent: ConsentState,
    stated_at: datetime,
    summary: CaseSummary | None = None,
    referred_at: datetime | None = None,
) -> CaseState:
    """Record the case's consent, unless a newer version is already known, and its summary (and when
    intake received the referral); returns what notify now knows of the case.

    Intake numbers each consent change; the copy moves only forward (compare-and-set on the version),
    so a routing decision that carries an older consent can never restore it. One statement (an
    upsert), also when two consumers hear of a new case at once.
    """
    connection = await session.connection()
    values: dict[str, Any] = {
        "case_id": case_id,
        "consent": consent.model_dump(mode="json"),
        "consent_version": consent.version,
        "consent_at": stated_at,
        "updated_at": utcnow(),
    }
    if summary is not None:
        values["summary"] = summary.model_dump(mode="json")
    if referred_at is not None:
        values["referred_at"] = referred_at
    statement = _remember_case_statement(connection.dialect.name, frozenset(values))
    row = (await connection.execute(statement, values)).one()
    return CaseState(row.consent, row.consent_version, row.closed_reason)


async def close_case(session: AsyncSession, case_id: UUID, closed_reason: str | None) -> None:
    """Set (or clear: consent given again) why the case takes no new offers."""
    table = CaseConsent.__table__  # type: ignore[attr-defined]
    await (await session.connection()).execute(
        update(table)
        .where(table.c.case_id == case_id)
        .values(closed_reason=closed_reason, updated_at=utcnow())
    )


@cache
def _remember_routing_statement(dialect: str) -> Executable:
    table = RoutingRecord.__table__  # type: ignore[attr-defined]
    return upsert(dialect, table).on_conflict_do_nothing(index_elements=[table.c.decision_id])


async def remember_routing(session: AsyncSession, event: CaseRouted) -> None:
    """Keep the routing decision for ops (once, however often the event comes)."""
    connection = await session.connection()
    await connection.execute(
        _remember_routing_statement(connection.dialect.name),
        {
            "decision_id": event.decision_id,
            "case_id": event.case_id,
            "offer_to": [s.model_dump(mode="json") for s in event.offer_to],
            "received_at": utcnow(),
        },
    )


def known_consent(case: CaseState | CaseConsent | None) -> ConsentState:
    """The newest consent notify has heard of for a case (nothing heard: not asked)."""
    if case is None:
        return ConsentState(status=ConsentStatus.not_asked)
    return ConsentState.model_validate({**case.consent, "version": case.consent_version})


def hold_back(session: AsyncSession, case_id: UUID, service: RoutedService, consent: ConsentState) -> None:
    """A routed service the case's current consent does not permit gets no offer; ops is told, so the
    case is not left waiting on an offer that was never made."""
    reason = f"offer to {service.service_id} not made: consent version {consent.version} does not permit it"
    enqueue(session, CaseEscalated(case_id=case_id, reason=reason))
    record(session, NOTIFY, "hold-back-offer", case_id=case_id, detail=reason)


_OFFERS = Offer.__table__  # type: ignore[attr-defined]
# The services that hold an open offer for a case (built once; see ``_remember_case_statement``).
_OPEN_SERVICES = core_select(_OFFERS.c.service_id).where(
    _OFFERS.c.case_id == bindparam("case_id"), _OFFERS.c.status.in_([s.value for s in OPEN_OFFER_STATUSES])
)
_ENDPOINTS = WebhookEndpointState.__table__  # type: ignore[attr-defined]
# The same, and which of the organisations it may offer to have their webhook endpoint disabled, in one query.
_OPEN_SERVICES_AND_DISABLED = union_all(
    core_select(_OFFERS.c.service_id, null().label("organisation_id")).where(
        _OFFERS.c.case_id == bindparam("case_id"),
        _OFFERS.c.status.in_([s.value for s in OPEN_OFFER_STATUSES]),
    ),
    core_select(null(), _ENDPOINTS.c.organisation_id).where(
        _ENDPOINTS.c.organisation_id.in_(bindparam("organisations", expanding=True)),
        _ENDPOINTS.c.disabled_at.is_not(None),
    ),
)
_INSERT_OFFERS = insert(_OFFERS)
_INSERT_DELIVERIES = insert(WebhookDelivery.__table__)  # type: ignore[attr-defined]


class NewOffers:
    """The offers one piece of work makes for a case, none to a service that already holds an open one.

    Each is announced as it is made (its event and its webhook carry the trace current then); all are
    written by ``write`` with one INSERT per table, rather than a row object, a read and a flush each.
    An offer to an organisation known to poll gets its ``offer.made`` delivery recorded as not applicable
    at once, as the dispatcher would have recorded it (unless its endpoint is disabled: the dispatcher
    then records the failure), so polling providers cost the dispatcher nothing. The other deliveries go
    straight to the dispatcher at the commit while it has room (``webhook_handover``), except to an
    endpoint ops disabled.
    """

    def __init__(
        self,
        session: AsyncSession,
        settings: NotifySettings,
        *,
        case_id: UUID,
        now: datetime,
        open_services: set[str],
        polling: set[str],
        disabled: set[str],
    ) -> None:
        self.session = session
        self.settings = settings
        self.case_id = case_id
        self.now = now
        self.open_services = open_services
        self.polling = polling
        self.disabled = disabled
        self.offers: list[dict[str, Any]] = []
        self.deliveries: list[dict[str, Any]] = []

    @classmethod
    async def for_case(
        cls,
        session: AsyncSession,
        settings: NotifySettings,
        *,
        case_id: UUID,
        now: datetime,
        organisations: Iterable[str] = (),
        polling: Iterable[str] = (),
    ) -> NewOffers:
        """``organisations``: those it may make offers to, ``polling``: those of them known to take offers
        by polling (``DeliverySettings.known_to_poll``). Which of them have their endpoint disabled is read
        in the same query as the services holding an open offer."""
        connection = await session.connection()
        polling = set(polling)
        organisations = set(organisations) | polling
        disabled: set[str] = set()
        if not organisations:
            held = set((await connection.execute(_OPEN_SERVICES, {"case_id": case_id})).scalars())
        else:
            rows = (
                await connection.execute(
                    _OPEN_SERVICES_AND_DISABLED, {"case_id": case_id, "organisations": sorted(organisations)}
                )
            ).all()
            held = {service_id for service_id, _ in rows if service_id is not None}
            disabled = {organisation_id for _, organisation_id in rows if organisation_id is not None}
        return cls(
            session,
            settings,
            case_id=case_id,
            now=now,
            open_services=held,
            polling=polling - disabled,
            disabled=disabled,
        )

    def make(
        self,
        *,
        service: RoutedService,
        summary: CaseSummary,
        decision_id: UUID | None,
        assigned_by: str | None = None,
    ) -> dict[str, Any] | None:
        """Offer the case to one service (its row's values), unless that service already holds an open offer."""
        if service.service_id in self.open_services:
            return None
        self.open_services.add(service.service_id)
        now = self.now
        offer = {
            "id": uuid4(),
            "case_id": self.case_id,
            "decision_id": decision_id,
            "service_id": service.service_id,
            "service_name": service.name,
            "service_type": service.service_type,
            "organisation_id": service.organisation_id,
            "by_and_for": list(service.by_and_for),
            "status": OfferStatus.offered.value,
            # The immigration firewall: a statutory body's offer never says the survivor has no recourse to
            # public funds (the router used it to match; the MARAC is not told).
            "summary": summary_for(summary, service.service_type).model_dump(mode="json"),
            "reasons": reasons_for(service.reasons, service.service_type),
            "created_at": now,
            "respond_by": respond_by(now, summary.risk_band, self.settings.deadline_hours()),
            "last_updated": now,
            "status_reason": None,
            "status_text": None,
            "handoff_released_at": None,
            "stop_contact_reason": None,
            "outcomes": [],
            "outcome": None,
            "assigned_by": assigned_by,
            "accepted_at": None,
            "first_contact_at": None,
        }
        self.offers.append(offer)
        enqueue(
            self.session,
            OfferMade(
                case_id=self.case_id,
                offer_id=offer["id"],
                service_id=service.service_id,
                organisation_id=service.organisation_id,
                reason="assigned-by-ops" if assigned_by else None,
            ),
        )
        status = (
            WebhookStatus.not_applicable if service.organisation_id in self.polling else WebhookStatus.pending
        )
        self.deliveries.append(
            webhook_row(
                self.settings,
                offer_id=offer["id"],
                organisation_id=service.organisation_id,
                case_id=self.case_id,
                event=WebhookEvent.offer_made,
                source="made",
                now=now,
                status=status,
            )
        )
        return offer

    async def write(self) -> None:
        if not self.offers:
            return
        pending = [d for d in self.deliveries if d["status"] == WebhookStatus.pending]
        handed = lease_for_handover(
            self.session, [d for d in pending if d["organisation_id"] not in self.disabled], self.now
        )
        connection = await self.session.connection()
        await connection.execute(_INSERT_OFFERS, self.offers)
        await connection.execute(_INSERT_DELIVERIES, self.deliveries)
        if handed < len(pending):  # the rest wait for the dispatcher's step
            self.session.info[WEBHOOKS_QUEUED] = True
        self.offers, self.deliveries = [], []


async def make_offer(
    session: AsyncSession,
    settings: NotifySettings,
    *,
    case_id: UUID,
    service: RoutedService,
    summary: CaseSummary,
    decision_id: UUID | None,
    now: datetime,
    assigned_by: str | None = None,
) -> Offer | None:
    """Offer the case to one service, unless that service already holds an open offer for it."""
    offers = await NewOffers.for_case(
        session, settings, case_id=case_id, now=now, organisations=[service.organisation_id]
    )
    made = offers.make(service=service, summary=summary, decision_id=decision_id, assigned_by=assigned_by)
    if made is None:
        return None
    await offers.write()
    return await session.get(Offer, made["id"])


async def accept_offer(session: AsyncSession, offer: Offer, provider: Caller, *, now: datetime) -> bool:
    """The provider takes the case. Accepting twice is harmless (False: nothing new to announce); accepting an
    offer that expired, was declined or withdrawn is an ``IllegalTransition``, even when that happened
    between the provider's read and its write."""
    if not await OFFER_STATES.advance(
        session, offer, OfferStatus.accepted, last_updated=now, accepted_at=now
    ):
        return False
    enqueue(
        session,
        OfferAccepted(
            case_id=offer.case_id,
            offer_id=offer.id,
            service_id=offer.service_id,
            organisation_id=offer.organisation_id,
            service_type=offer.service_type,
            by_and_for=bool(offer.by_and_for),
        ),
    )
    announce_task(session, offer.case_id, TaskView.accepted(offer.service_name), now=now)
    record(session, provider, "accept-offer", case_id=offer.case_id, detail=f"offer {offer.id}")
    return True


async def decline_offer(
    session: AsyncSession,
    offer: Offer,
    provider: Caller,
    *,
    reason: DeclineReason,
    text: str | None,
    now: datetime,
) -> bool:
    """The provider cannot take the case; the router offers it onwards. Declining twice is harmless."""
    if not await OFFER_STATES.advance(
        session, offer, OfferStatus.declined, last_updated=now, status_reason=reason.value, status_text=text
    ):
        return False
    # The coded reason only: the provider's text stays here, for ops, and never travels on the bus.
    enqueue(
        session,
        OfferDeclined(
            case_id=offer.case_id,
            offer_id=offer.id,
            service_id=offer.service_id,
            organisation_id=offer.organisation_id,
            reason=reason.value,
        ),
    )
    announce_task(session, offer.case_id, TaskView.declined(offer.service_name), now=now)
    record(session, provider, "decline-offer", case_id=offer.case_id, detail=f"offer {offer.id}; {reason}")
    return True


async def report_outcome(
    session: AsyncSession, offer: Offer, provider: Caller, *, outcome: Outcome, now: datetime
) -> bool:
    """What happened after accepting, forwards only (``OUTCOME_STATES``); the referrer's Task follows.
    Reporting the current outcome again changes and announces nothing."""

    def accepted(row: Offer) -> None:
        if row.status != OfferStatus.accepted:
            raise IllegalTransition(
                OUTCOME_STATES,
                row.outcome,
                outcome,
                f"The offer is {row.status}: only an accepted offer has outcomes.",
            )

    if not await OUTCOME_STATES.advance(
        session,
        offer,
        outcome,
        precondition=accepted,
        guard=(col(Offer.status) == OfferStatus.accepted,),
        last_updated=now,
        outcomes=lambda row: [*row.outcomes, outcome.value],
        first_contact_at=lambda row: row.first_contact_at or (now if outcome in CONTACT_OUTCOMES else None),
    ):
        return False
    # Task.output lists every outcome any provider reported on the case.
    case_offers = (await session.exec(select(Offer).where(Offer.case_id == offer.case_id))).all()
    outputs = tuple(dict.fromkeys(o for each in case_offers for o in each.outcomes))
    announce_task(
        session, offer.case_id, task_for_outcome(outcome, offer.service_name), now=now, outputs=outputs
    )
    record(session, provider, "report-outcome", case_id=offer.case_id, detail=f"offer {offer.id}; {outcome}")
    return True


async def expire_offer(
    session: AsyncSession, settings: NotifySettings, offer: Offer, *, now: datetime
) -> bool:
    """The deadline passed without an answer: the router offers the case to the next service."""
    if offer.status != OfferStatus.offered:
        return False
    try:
        if not await OFFER_STATES.advance(
            session, offer, OfferStatus.expired, last_updated=now, status_reason="no-response"
        ):
            return False
    except IllegalTransition:
        return False  # answered while its deadline passed: the answer stands
    enqueue(
        session,
        OfferExpired(
            case_id=offer.case_id,
            offer_id=offer.id,
            service_id=offer.service_id,
            organisation_id=offer.organisation_id,
            reason="no-response",
        ),
    )
    announce_task(session, offer.case_id, TaskView.expired(offer.service_name), now=now)
    queue_webhook(session, settings, offer, WebhookEvent.offer_expired, source="expired", now=now)
    record(
        session, NOTIFY, "expire-offer", case_id=offer.case_id, detail=f"offer {offer.id}; deadline passed"
    )
    return True


async def stop_offers(
    session: AsyncSession,
    settings: NotifySettings,
    *,
    case_id: UUID,
    reason: str,
    consent: ConsentState | None,
    source: str,
    now: datetime,
) -> list[Offer]:
    """Withdraw the case's open offers that may no longer go ahead; tell providers holding the handoff to stop.

    ``consent`` is the new consent (an offer it still permits carries on, such as the MARAC on a
    recorded safeguarding basis); ``None`` stops every open offer (the referral was cancelled).
    """
    offers = (
        await session.exec(
            select(Offer).where(Offer.case_id == case_id, col(Offer.status).in_(OPEN_OFFER_STATUSES))
        )
    ).all()
    stopped = []
    for offer in offers:
        if consent is not None and still_permitted(
            consent,
            service_type=offer.service_type,
            by_and_for=bool(offer.by_and_for),
            organisation_id=offer.organisation_id,
            now=now,
        ):
            continue
        if offer.handoff_released_at is not None:
            # The provider holds identifying data: the offer stays theirs, flagged so they stop contact.
            offer.stop_contact_reason = reason
            offer.last_updated = now
            session.add(offer)
            enqueue(
                session,
                OfferContactStopped(
                    case_id=case_id,
                    offer_id=offer.id,
                    service_id=offer.service_id,
                    organisation_id=offer.organisation_id,
                    reason=reason,
                ),
            )
            queue_webhook(session, settings, offer, WebhookEvent.contact_stop, source=source, now=now)
            record(session, NOTIFY, "stop-contact", case_id=case_id, detail=f"offer {offer.id}; {reason}")
        else:
            try:
                if not await OFFER_STATES.advance(
                    session, offer, OfferStatus.withdrawn, last_updated=now, status_reason=reason
                ):
                    continue
            except IllegalTransition:
                continue  # declined or expired meanwhile: nothing left to withdraw
            enqueue(
                session,
                OfferWithdrawn(
                    case_id=case_id,
                    offer_id=offer.id,
                    service_id=offer.service_id,
                    organisation_id=offer.organisation_id,
                    reason=reason,
                ),
            )
            queue_webhook(session, settings, offer, WebhookEvent.offer_withdrawn, source=source, now=now)
            record(session, NOTIFY, "withdraw-offer", case_id=case_id, detail=f"offer {offer.id}; {reason}")
        stopped.append(offer)
    return stopped
