"""The response-deadline timer. Deadlines are stored on each offer, so a restarted notify (or another
instance) expires whatever fell due while it was away; the router then offers the case onwards."""

from __future__ import annotations

from sqlmodel import col, select

from services.notify.offers import expire_offer
from services.notify.settings import NotifySettings
from services.notify.store import Offer, OfferStatus
from shared.background import PeriodicWorker
from shared.events import utcnow
from shared.service import Runtime

BATCH = 100


class DeadlineTimer:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings: NotifySettings = runtime.settings  # type: ignore[assignment]
        self.worker = PeriodicWorker("notify-deadlines", self.step, interval=self.settings.sla_check_seconds)

    async def step(self) -> bool:
        """Expire one batch of overdue offers; each in its own transaction, so one failure blocks no other."""
        now = utcnow()
        async with self.runtime.db.session() as session:
            overdue = (
                await session.exec(
                    select(Offer.id)
                    .where(Offer.status == OfferStatus.offered, col(Offer.respond_by) <= now)
                    .order_by(col(Offer.respond_by))
                    .limit(BATCH)
                )
            ).all()
        for offer_id in overdue:
            async with self.runtime.db.transaction() as session:
                offer = await session.get(Offer, offer_id)
                if offer is not None:
                    await expire_offer(session, self.settings, offer, now=now)
        return len(overdue) == BATCH
