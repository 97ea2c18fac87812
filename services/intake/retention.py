"""Purging identifying data the survivor withdrew consent for.

A withdrawal marks the referral ``purge_due_at`` (``referrals.update_consent``); once that moment
passes, the encrypted identifying details are emptied and ``purged_at`` is set. The routing summary,
the Task and the audit trail stay: they identify nobody. The wider retention schedule (how long closed
cases keep their data) belongs to the retention rule, not here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select

from services.intake.settings import IntakeSettings
from services.intake.store import Referral
from shared.audit import record
from shared.auth import Caller, CallerKind
from shared.background import PeriodicWorker
from shared.db import Database
from shared.events import utcnow
from shared.service import Runtime

INTAKE = Caller(CallerKind.service, "intake")
BATCH = 100


async def purge_due(db: Database, *, now: datetime, batch: int = BATCH) -> int:
    """Empty the identifying data of every referral whose purge is due; returns how many were purged.

    Compare-and-set on ``purge_due_at``: a consent given again meanwhile clears it, and that referral is
    left alone."""
    purged = 0
    async with db.transaction() as session:
        due = (await session.exec(
            select(Referral.id, Referral.purge_due_at)
            .where(col(Referral.purge_due_at) <= now, col(Referral.purged_at).is_(None))
            .order_by(col(Referral.purge_due_at))
            .limit(batch)
        )).all()
        for referral_id, due_at in due:
            result = await session.exec(  # type: ignore[call-overload]
                update(Referral)
                .where(col(Referral.id) == referral_id, col(Referral.purge_due_at) == due_at,
                       col(Referral.purged_at).is_(None))
                .values(identifying="", purged_at=now)
            )
            if result.rowcount == 1:
                purged += 1
                record(session, INTAKE, "purge-identifying-data", case_id=referral_id, detail="consent withdrawn")
    return purged


def start(runtime: Runtime) -> None:
    settings: IntakeSettings = runtime.settings  # type: ignore[assignment]

    async def step() -> bool:
        return await purge_due(runtime.db, now=utcnow()) == BATCH

    worker = PeriodicWorker("intake-purge", step, interval=settings.purge_check_seconds)
    worker.start()
    runtime.stop_hooks.append(worker.stop)
