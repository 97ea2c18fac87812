"""Retention: purging identifying data once it may no longer be kept.

Two rules, one job. Consent withdrawn: ``referrals.update_consent`` marks the referral ``purge_due_at``
(``INTAKE_WITHDRAWAL_PURGE_HOURS`` later). Case closed: the Task reached a final state at ``closed_at``,
and the data is kept ``INTAKE_CLOSED_PURGE_DAYS`` after that (counted at purge time, so a changed
setting applies to every closed case). A purge empties the encrypted identifying details, removes the
copies of Consent resources the referrer sent (kept to answer retries, and free to name the person),
sets ``purged_at``, writes an audit record with the rule it applied and announces ``referral.purged``
(notify then empties ops' free-text notes on the case). The routing summary, the Task and the audit
trail stay: they identify nobody, and the statistics need them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.settings import IntakeSettings
from services.intake.store import IdempotencyRecord, Referral
from shared.audit import record
from shared.auth import Caller, CallerKind
from shared.background import PeriodicWorker
from shared.db import Database
from shared.events import IdentifyingDataPurged, PurgeRule, utcnow
from shared.outbox import enqueue
from shared.service import Runtime

INTAKE = Caller(CallerKind.service, "intake")
BATCH = 100
WITHDRAWN = "consent withdrawn"
CLOSED = "case closed"


async def _purge(session: AsyncSession, referral_id: UUID, now: datetime, *, guard: object, reason: str,
                 rule: PurgeRule, detail: str) -> bool:
    """Empty one referral's identifying data if ``guard`` (the rule's compare-and-set) still holds."""
    result = await session.exec(  # type: ignore[call-overload]
        update(Referral)
        .where(col(Referral.id) == referral_id, col(Referral.purged_at).is_(None), guard)
        .values(identifying="", purged_at=now)
    )
    if result.rowcount != 1:
        return False
    await session.exec(delete(IdempotencyRecord).where(  # type: ignore[call-overload]
        col(IdempotencyRecord.location) == f"/fhir/Consent/{referral_id}"))
    record(session, INTAKE, "purge-identifying-data", case_id=referral_id, detail=detail, reason=reason)
    enqueue(session, IdentifyingDataPurged(case_id=referral_id, rule=rule))  # notify drops its notes on the case
    return True


async def purge_due(db: Database, *, now: datetime, closed_after: timedelta | None = None, batch: int = BATCH) -> int:
    """Purge the identifying data of up to ``batch`` referrals whose purge is due; returns how many.

    Withdrawals first (compare-and-set on ``purge_due_at``: a consent given again meanwhile clears it,
    and that referral is left alone), then referrals closed more than ``closed_after`` ago (None: that
    rule is off)."""
    purged = 0
    async with db.transaction() as session:
        due = (await session.exec(
            select(Referral.id, Referral.purge_due_at)
            .where(col(Referral.purge_due_at) <= now, col(Referral.purged_at).is_(None))
            .order_by(col(Referral.purge_due_at))
            .limit(batch)
        )).all()
        for referral_id, due_at in due:
            purged += await _purge(session, referral_id, now, guard=col(Referral.purge_due_at) == due_at,
                                   reason=WITHDRAWN, rule=PurgeRule.consent_withdrawn, detail=f"due {due_at:%Y-%m-%dT%H:%MZ}")
        if closed_after is not None and purged < batch:
            cutoff = now - closed_after
            closed = (await session.exec(
                select(Referral.id, Referral.closed_at)
                .where(col(Referral.closed_at) <= cutoff, col(Referral.purged_at).is_(None))
                .order_by(col(Referral.closed_at))
                .limit(batch - purged)
            )).all()
            for referral_id, closed_at in closed:
                purged += await _purge(session, referral_id, now, guard=col(Referral.closed_at) <= cutoff,
                                       reason=CLOSED, rule=PurgeRule.case_closed, detail=f"closed {closed_at:%Y-%m-%dT%H:%MZ}; kept "
                                                             f"{closed_after.total_seconds() / 86400:g} days")
    return purged


def start(runtime: Runtime) -> None:
    settings: IntakeSettings = runtime.settings  # type: ignore[assignment]

    async def step() -> bool:
        closed_after = timedelta(days=settings.closed_purge_days)
        return await purge_due(runtime.db, now=utcnow(), closed_after=closed_after) == BATCH

    worker = PeriodicWorker("intake-purge", step, interval=settings.purge_check_seconds)
    worker.start()
    runtime.stop_hooks.append(worker.stop)
