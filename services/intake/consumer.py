"""Intake's bus handlers: keep each referral's Task in step with the case."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.closed_loop import task_changed
from services.intake.store import AcceptedOffer, Referral
from services.intake.task import TASK_STATES
from shared.bus import Delivery
from shared.events import CaseStatus, Event, OfferAccepted, OfferContactStopped, TaskStatus
from shared.metrics import REFERRAL_TO_ACCEPTANCE
from shared.service import Runtime
from shared.state_machine import IllegalTransition

log = logging.getLogger(__name__)

STATUS_REASON_MAX = 500
ROUTING_SUMMARY_MAX = 1000


# What the consumer needs of a referral to move its Task: read with Core, never the whole row (it holds
# the encrypted identifying data) nor an ORM object to load, refresh and flush (issue 9's profile).
_REFERRALS: Table = Referral.__table__  # type: ignore[attr-defined]
_TASK_STATE = select(
    _REFERRALS.c.id,
    _REFERRALS.c.client_id,
    _REFERRALS.c.task_status,
    _REFERRALS.c.consent_version,
    _REFERRALS.c.created_at,
    _REFERRALS.c.last_updated,
).where(_REFERRALS.c.id == bindparam("id"))


async def on_case_status(session: AsyncSession, event: Event, _delivery: Delivery) -> None:
    assert isinstance(event, CaseStatus)
    connection = await session.connection()
    referral = (await connection.execute(_TASK_STATE, {"id": event.case_id})).first()
    if referral is None:
        raise LookupError("case.status for a referral intake does not hold")
    # Events can arrive out of order after a retry: never move a Task back in time.
    if referral.last_updated > event.occurred_at:
        return
    if (
        event.consent_version is not None
        and referral.consent_version > event.consent_version
        and TASK_STATES.is_final(event.status)
    ):
        # A final answer given on a consent the referrer has since replaced: the router decides again on
        # the new consent, so the Task waits for that answer instead of closing on the old one.
        log.info(
            "intake: Task %s stays %s (event %s answered consent version %s, now %s)",
            referral.id,
            referral.task_status,
            event.event_id,
            event.consent_version,
            referral.consent_version,
        )
        return
    was_requested = referral.task_status == TaskStatus.requested
    values: dict[str, Any] = {
        "business_status": event.business_status,
        "business_status_code": event.business_status_code,
        # Bounded as the columns are (the router's reasons are built text, and can grow with the rules).
        "status_reason": event.status_reason[:STATUS_REASON_MAX] if event.status_reason else None,
        "status_reason_code": event.status_reason_code,
        "last_updated": event.occurred_at,
    }
    if event.routing_summary:
        values["routing_summary"] = event.routing_summary[:ROUTING_SUMMARY_MAX]
    if event.outputs:
        values["task_outputs"] = list(event.outputs)
    if TASK_STATES.is_final(event.status):
        values["closed_at"] = event.occurred_at  # the identifying data's retention is counted from here
    try:
        moved = await TASK_STATES.advance_row(
            connection, _REFERRALS, {"id": referral.id}, referral.task_status, event.status, **values
        )
    except IllegalTransition as exc:
        # Another service's news after the Task moved on (a MARAC declining once the IDVA accepted, an
        # outcome after cancellation): the Task keeps its state. Ids only: statuses carry no one's details.
        log.info(
            "intake: Task %s stays %s (event %s: %s)", referral.id, exc.current, event.event_id, exc.target
        )
        return
    if not moved:
        return
    if was_requested and event.status == TaskStatus.accepted:
        REFERRAL_TO_ACCEPTANCE.observe(max((event.occurred_at - referral.created_at).total_seconds(), 0.0))
    await task_changed(session, task_id=referral.id, client_id=referral.client_id)


async def on_offer_news(session: AsyncSession, event: Event, _delivery: Delivery) -> None:
    """Record acceptances (and stops) so the handoff is released only to an organisation that accepted.

    On an upgrade the new durable consumer starts at the beginning of the stream (``DeliverPolicy.ALL``), so
    acceptances made before it existed are recorded too, as far back as the stream keeps events."""
    assert isinstance(event, OfferAccepted | OfferContactStopped)
    known = await session.get(AcceptedOffer, event.offer_id)
    if isinstance(event, OfferAccepted):
        if known is None:
            session.add(
                AcceptedOffer(
                    offer_id=event.offer_id,
                    case_id=event.case_id,
                    organisation_id=event.organisation_id,
                    service_id=event.service_id,
                    service_type=event.service_type,
                    by_and_for=event.by_and_for,
                    accepted_at=event.occurred_at,
                )
            )
    elif known is not None and known.stopped_at is None:
        known.stopped_at = event.occurred_at
        session.add(known)


def register(runtime: Runtime) -> None:
    runtime.consume("intake-case-status", [CaseStatus.subject], on_case_status)
    runtime.consume(
        "intake-offer-acceptances", [OfferAccepted.subject, OfferContactStopped.subject], on_offer_news
    )
