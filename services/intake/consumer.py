"""Intake's bus handlers: keep each referral's Task in step with the case."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.closed_loop import task_changed
from services.intake.referrals import FINAL_TASK_STATES
from services.intake.store import Referral
from shared.bus import Delivery
from shared.events import CaseStatus, Event
from shared.service import Runtime


async def on_case_status(session: AsyncSession, event: Event, _delivery: Delivery) -> None:
    assert isinstance(event, CaseStatus)
    referral = await session.get(Referral, event.case_id)
    if referral is None:
        raise LookupError("case.status for a referral intake does not hold")
    # Events can arrive out of order after a retry: never move a Task back in time. A finished Task
    # (completed, cancelled, rejected) stays as it finished: a consent withdrawal after the case
    # closed stops the providers but does not rewrite what happened.
    if referral.last_updated > event.occurred_at or (
        referral.task_status in FINAL_TASK_STATES and event.status != referral.task_status
    ):
        return
    referral.task_status = event.status
    referral.business_status = event.business_status
    referral.business_status_code = event.business_status_code
    referral.status_reason = event.status_reason
    if event.outputs:
        referral.task_outputs = list(event.outputs)
    referral.last_updated = event.occurred_at
    session.add(referral)
    await task_changed(session, referral)


def register(runtime: Runtime) -> None:
    runtime.consume("intake-case-status", [CaseStatus.subject], on_case_status)
