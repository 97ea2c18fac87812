"""Signed webhooks to providers (Standard Webhooks): persisted deliveries, retried across restarts.

Each delivery row is one event for one provider; its id is the ``webhook-id`` on every attempt, so a
receiver that saw it before can drop the repeat. A failed attempt is retried with exponential backoff
and full jitter until the retry period (24 hours by default) has passed since the event; then the
endpoint is disabled, its pending deliveries are marked failed, and every affected case is escalated
to ops, so nothing is dropped silently (the provider can still see its offers by polling).

A new offer's delivery usually reaches the dispatcher without a step: the transaction that makes the
offer leases it and hands it over as it commits (``webhook_handover``); the step sends the rest, the
retries and what a stopped process left leased.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import httpx
from opentelemetry import trace
from sqlalchemy import bindparam, event, update
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from standardwebhooks.webhooks import Webhook

from services.notify import webhook_handover
from services.notify.offers import NOTIFY, WEBHOOKS_QUEUED
from services.notify.settings import NotifySettings
from services.notify.store import WebhookDelivery, WebhookEndpointState, WebhookStatus
from shared.audit import record
from shared.background import PeriodicWorker
from shared.delivery import endpoint_refusal, retry_delay
from shared.directory_contract import ProviderDelivery
from shared.egress import EndpointRefused, external_client, policy_for
from shared.events import CaseEscalated, utcnow
from shared.metrics import WEBHOOK_DELIVERIES, WEBHOOK_FAILURES
from shared.outbox import enqueue
from shared.service import Runtime
from shared.telemetry import instrument_client, restored_context, safe_attributes, tracer

log = logging.getLogger(__name__)
BATCH = 50
_DELIVERIES = WebhookDelivery.__table__  # type: ignore[attr-defined]
# A delivered webhook's outcome is written with the others of the same moment, within this many seconds.
OUTCOME_DELAY = 0.1
# pending → delivered only: written again (a write cut short by a stop after its commit), it changes nothing.
_MARK_DELIVERED = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("delivery_id"), _DELIVERIES.c.status == WebhookStatus.pending)
    .values(
        status=WebhookStatus.delivered,
        delivered_at=bindparam("at"),
        last_attempt_at=bindparam("at"),
        attempts=_DELIVERIES.c.attempts + 1,
    )
)


class DirectoryUnavailable(RuntimeError):
    pass


class DeliverySettings:
    """Providers' delivery settings from the directory, reused for a short while."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings: NotifySettings = runtime.settings  # type: ignore[assignment]
        self._cache: dict[str, tuple[float, ProviderDelivery]] = {}

    async def of(self, organisation_id: str) -> ProviderDelivery:
        hit = self._cache.get(organisation_id)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            response = await self.runtime.http.get(
                f"{self.settings.directory_url}/internal/organisations/{organisation_id}/delivery",
                headers=self.settings.service_headers(),
            )
        except httpx.HTTPError as exc:
            raise DirectoryUnavailable(type(exc).__name__) from None
        if response.status_code == 404:
            # Unknown to the directory (or a directory without delivery settings yet): it polls.
            delivery = ProviderDelivery(organisation_id=organisation_id, channel="poll")
        elif response.status_code == 200:
            delivery = ProviderDelivery.model_validate(response.json())
        else:
            raise DirectoryUnavailable(f"HTTP {response.status_code}")
        self._cache[organisation_id] = (time.monotonic() + self.settings.delivery_cache_seconds, delivery)
        return delivery

    def known_to_poll(self, organisation_ids: Iterable[str]) -> set[str]:
        """Those of these organisations whose delivery settings, still fresh in the cache, say they take offers
        by polling (or the web inbox): their offers need no webhook. Never asks the directory (the consumer
        that makes offers must not wait on it): an organisation not in the cache is left to the dispatcher,
        whose look-up fills the cache for the next offers."""
        now = time.monotonic()
        return {
            organisation_id
            for organisation_id in set(organisation_ids)
            if (hit := self._cache.get(organisation_id)) and hit[0] > now and polls(hit[1])
        }


def polls(target: ProviderDelivery) -> bool:
    """The organisation takes offers by polling (or the web inbox), not by webhook: nothing to send."""
    return target.channel != "webhook" or not target.webhook_url


def sign(delivery_id: str, at: datetime, payload: str, secrets: tuple[str, ...]) -> str:
    """The ``webhook-signature`` header: one ``v1,`` signature per secret, so rotation never breaks a receiver."""
    return " ".join(Webhook(secret).sign(delivery_id, at, payload) for secret in secrets)


def webhook_headers(delivery_id: str, at: datetime, payload: str, secrets: tuple[str, ...]) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt: the delivery's stable id, when, and the signatures."""
    return {
        "content-type": "application/json",
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": sign(delivery_id, at, payload, secrets),
    }


# Running dispatchers, woken when a transaction that queued a webhook commits (``_wake_dispatchers``).
_DISPATCHERS: weakref.WeakSet[WebhookDispatcher] = weakref.WeakSet()


@event.listens_for(Session, "after_commit")
def _wake_dispatchers(session: Session) -> None:
    # Only commits that queued a webhook wake the dispatchers (every commit did, issue 9: a query and often a
    # write per consumed batch for nothing); the dispatcher's own polling stays the fallback after a crash.
    if session.info.pop(WEBHOOKS_QUEUED, False):
        for dispatcher in list(_DISPATCHERS):
            dispatcher.worker.wake()


@event.listens_for(Session, "after_transaction_end")
def _forget_rolled_back_webhooks(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back (a commit popped the flag already): nothing was queued
        session.info.pop(WEBHOOKS_QUEUED, None)


class WebhookDispatcher:
    def __init__(self, runtime: Runtime, directory: DeliverySettings | None = None) -> None:
        self.runtime = runtime
        self.settings: NotifySettings = runtime.settings  # type: ignore[assignment]
        self.directory = directory or DeliverySettings(runtime)
        # Webhook URLs are the providers': a client of their own that calls only public addresses, checked
        # at each connection (shared.egress), never the internal client with its service credentials.
        self.http = external_client(policy_for(self.settings), timeout=self.settings.webhook_timeout_seconds)
        # The POST is a client span of the delivery (as the internal client's calls are): the trace shows
        # the webhook call itself, not only the directory look-up before it.
        instrument_client(self.http)
        runtime.stop_hooks.append(self.http.aclose)
        # Delivered, not yet recorded (``_write_delivered``): delivery id and when.
        self._delivered: list[dict[str, Any]] = []
        self._outcomes = PeriodicWorker(
            "notify-webhook-outcomes", self._write_delivered, interval=1.0, linger=OUTCOME_DELAY
        )
        runtime.stop_hooks.append(self._stop_outcomes)  # hooks run in reverse: after the attempts stopped
        self._slots = asyncio.Semaphore(self.settings.webhook_concurrency)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._left_over = False  # the last step left due deliveries for want of a free slot
        # Rows leased for hand-over by transactions still open (``webhook_handover``): their slots are
        # spoken for.
        self._promised = 0
        self._stopped = False
        runtime.stop_hooks.append(self._stop_attempts)  # hooks run in reverse: before the client closes
        self.worker = PeriodicWorker(
            "notify-webhooks", self.step, interval=self.settings.webhook_poll_seconds
        )
        _DISPATCHERS.add(self)
        engine = runtime.db.engine.sync_engine
        webhook_handover.register(engine, self)

        async def forget() -> None:
            _DISPATCHERS.discard(self)
            webhook_handover.unregister(engine, self)

        runtime.stop_hooks.append(forget)

    async def step(self) -> bool:
        now = utcnow()
        async with self.runtime.db.session() as session:
            due = (
                await session.exec(
                    select(WebhookDelivery)
                    .where(
                        WebhookDelivery.status == WebhookStatus.pending,
                        col(WebhookDelivery.next_attempt_at) <= now,
                    )
                    .order_by(col(WebhookDelivery.next_attempt_at))
                    .limit(BATCH)
                )
            ).all()
            disabled = (
                set(
                    (
                        await session.exec(
                            select(WebhookEndpointState.organisation_id).where(
                                col(WebhookEndpointState.organisation_id).in_(
                                    {d.organisation_id for d in due}
                                ),
                                col(WebhookEndpointState.disabled_at).is_not(None),
                            )
                        )
                    ).all()
                )
                if due
                else set()
            )
        polling: list[str] = []
        to_attempt: list[WebhookDelivery] = []
        for delivery in due:
            if delivery.id in self._in_flight:
                continue  # still being sent here (its lease ran out while the endpoint is slow)
            if delivery.organisation_id not in disabled and await self._polls(delivery):
                polling.append(delivery.id)
            else:
                to_attempt.append(delivery)
        # No more leased than can be sent now: a leased row waits for nobody (its lease runs while it does).
        free = self.room()
        self._left_over = len(to_attempt) > free
        to_attempt = to_attempt[: max(free, 0)]
        leased = await self._lease_and_close(to_attempt, polling, now)
        for delivery in to_attempt:
            if delivery.id in leased:
                await self._slots.acquire()
                self._in_flight[delivery.id] = asyncio.create_task(
                    self._run_attempt(delivery, disabled=delivery.organisation_id in disabled)
                )
        return len(due) == BATCH and not self._left_over

    # --- hand-over (``webhook_handover``): a new offer's delivery, leased by the transaction that made it

    @property
    def lease(self) -> timedelta:
        """How long a leased delivery is this instance's to send before any step may take it again."""
        return timedelta(seconds=self.settings.webhook_timeout_seconds * 3)

    def room(self) -> int:
        if self._stopped:
            return 0
        return self.settings.webhook_concurrency - len(self._in_flight) - self._promised

    def promise(self, count: int) -> None:
        self._promised += count

    def withdraw(self, count: int) -> None:
        self._promised -= count

    def take(self, rows: list[dict[str, Any]]) -> None:
        self._promised -= len(rows)
        if self._stopped:
            return  # leased and stored: the next notify's step sends them once the lease runs out
        for row in rows:
            delivery = WebhookDelivery(**row)
            # In a context of its own: the commit runs inside the transaction's (its writer slot, its trace),
            # which the attempt must not inherit.
            self._in_flight[delivery.id] = asyncio.create_task(
                self._run_handed(delivery), context=contextvars.Context()
            )

    async def _run_handed(self, delivery: WebhookDelivery) -> None:
        try:
            # A slot was free when the row was leased; a step may have filled it since: wait for the next.
            await self._slots.acquire()
        except asyncio.CancelledError:
            self._in_flight.pop(delivery.id, None)
            raise
        await self._run_attempt(delivery, disabled=False)

    async def _lease_and_close(
        self, to_attempt: list[WebhookDelivery], polling: list[str], now: datetime
    ) -> set[str]:
        """One short transaction for a step: the deliveries about to be sent are leased (taken for one attempt
        each, so that two notify instances never send the same one at once; returned: those this instance
        got), and those of providers that poll are closed (nothing to send). It was a transaction per
        delivery to lease it, and another for the polling ones (issue 9). Only still-pending rows: another
        instance, or ops disabling the endpoint meanwhile, may have got there first."""
        if not to_attempt and not polling:
            return set()
        lease = self.lease
        async with self.runtime.db.statements(announce=False) as connection:  # nothing new for anyone to do
            if polling:
                await connection.execute(
                    update(_DELIVERIES)
                    .where(_DELIVERIES.c.id.in_(polling), _DELIVERIES.c.status == WebhookStatus.pending)
                    .values(status=WebhookStatus.not_applicable)
                )
            if not to_attempt:
                return set()
            result = await connection.execute(
                update(_DELIVERIES)
                .where(
                    _DELIVERIES.c.id.in_([delivery.id for delivery in to_attempt]),
                    _DELIVERIES.c.status == WebhookStatus.pending,
                    _DELIVERIES.c.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + lease)
                .returning(_DELIVERIES.c.id)
            )
            return set(result.scalars().all())

    async def _run_attempt(self, delivery: WebhookDelivery, *, disabled: bool) -> None:
        """One leased delivery's attempt, alongside those already in flight (up to
        ``NOTIFY_WEBHOOK_CONCURRENCY``; the step does not wait for it): one slow or unreachable endpoint
        does not hold every other provider's offers behind it, and a burst of offers is not delivered one
        round trip at a time (issue 9)."""
        try:
            await self.attempt(delivery, disabled=disabled)
        except Exception as exc:  # noqa: BLE001 - the row stays pending: retried once its lease runs out
            log.warning("webhook attempt failed (%s); it is retried", type(exc).__name__)
        finally:
            self._in_flight.pop(delivery.id, None)
            self._slots.release()
            if self._left_over:  # deliveries left due for want of a free slot: there is one now
                self.worker.wake()

    async def _stop_attempts(self) -> None:
        """On shutdown: attempts still open are cancelled; their rows stay pending (leased), so the next
        notify to run delivers them (at least once; receivers de-duplicate on ``webhook-id``)."""
        self._stopped = True
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _polls(self, delivery: WebhookDelivery) -> bool:
        try:
            target = await self.directory.of(delivery.organisation_id)
        except DirectoryUnavailable:
            return False  # the attempt finds out again and reschedules
        return polls(target)

    async def attempt(self, delivery: WebhookDelivery, *, disabled: bool) -> None:
        """Send a delivery this instance leased (``step``)."""
        with tracer().start_as_current_span(
            "deliver webhook",
            context=restored_context(delivery.trace_context),
            kind=trace.SpanKind.PRODUCER,
            attributes=safe_attributes(pathways__offer_id=delivery.offer_id, pathways__delivery=delivery.id),
        ):
            await self._attempt(delivery, utcnow(), disabled=disabled)

    async def _attempt(self, delivery: WebhookDelivery, now: datetime, *, disabled: bool) -> None:
        if disabled:
            await self._finish(delivery, WebhookStatus.failed, error="endpoint disabled")
            return
        try:
            target = await self.directory.of(delivery.organisation_id)
        except DirectoryUnavailable as exc:
            # Not the endpoint's fault: try again later without counting an attempt against it.
            await self._reschedule(delivery, now, error=f"directory: {exc}", count=False)
            return
        if polls(target):
            await self._finish(delivery, WebhookStatus.not_applicable)
            return
        refusal = endpoint_refusal(target.webhook_url, development=self.settings.is_development)
        if refusal is None and not target.signing_secrets:
            refusal = "no signing secret configured"
        if refusal is not None:
            # A misconfiguration no retry can fix: disable now and let ops sort it out.
            await self._disable(delivery, now, reason=refusal)
            return
        headers = webhook_headers(delivery.id, now, delivery.payload, target.signing_secrets)
        try:
            response = await self.http.post(
                target.webhook_url,
                content=delivery.payload.encode(),
                headers=headers,
                timeout=self.settings.webhook_timeout_seconds,
                follow_redirects=False,
            )
            error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
            if error is not None:
                WEBHOOK_FAILURES.labels("http-status").inc()
        except EndpointRefused as exc:
            # The name now resolves to an address Pathways does not call (DNS rebinding, or a changed
            # record): nothing was sent; no retry can fix it, so ops decide.
            await self._disable(delivery, now, reason=str(exc))
            return
        except httpx.HTTPError as exc:
            error = type(exc).__name__
            WEBHOOK_FAILURES.labels("network").inc()
        if error is None:
            WEBHOOK_DELIVERIES.inc()
            self._record_delivered(delivery, now)
        elif now - delivery.created_at >= timedelta(hours=self.settings.webhook_retry_hours):
            await self._disable(
                delivery, now, reason=f"failing for {self.settings.webhook_retry_hours:g} h ({error})"
            )
        else:
            await self._reschedule(delivery, now, error=error, count=True)

    # The delivery is leased (``_lease_and_close``): no one else writes its row meanwhile, so what ``step`` read of it
    # (its attempts) is current, and each outcome is one UPDATE rather than a read and a flush. A success keeps
    # the last failure on record, for ops.

    async def _finish(self, delivery: WebhookDelivery, status: WebhookStatus, *, error: str | None = None) -> None:
        """Closes a delivery that was not sent: nothing to send (the provider polls), or its endpoint disabled."""
        values: dict[str, Any] = {"status": status, "delivered_at": None}
        if error is not None:
            values["last_error"] = error
        await self._update(delivery, values)

    def _record_delivered(self, delivery: WebhookDelivery, at: datetime) -> None:
        """A delivered attempt's outcome is written a little later (``OUTCOME_DELAY``), in one transaction
        with those delivered meanwhile: under load a write per delivery was a third of notify's write
        transactions, each waiting its turn of SQLite's writer slot (issue 9). The row stays leased until
        then, so no step sends it again; after a crash before the write it is sent again once its lease
        runs out, with the same ``webhook-id`` (at least once, as after any crash mid-attempt)."""
        self._delivered.append({"delivery_id": delivery.id, "at": at})
        if not self._outcomes.running and not self._stopped:  # once stopped, ``_stop_outcomes`` writes it
            self._outcomes.start()
        self._outcomes.wake()

    async def _write_delivered(self) -> bool:
        if not self._delivered:
            return False
        outcomes = list(self._delivered)
        async with self.runtime.db.statements(announce=False) as connection:  # nothing new for anyone to do
            await connection.execute(_MARK_DELIVERED, outcomes)
        del self._delivered[: len(outcomes)]
        return bool(self._delivered)

    async def _stop_outcomes(self) -> None:
        await self._outcomes.stop()
        try:
            await self._write_delivered()
        except Exception as exc:  # noqa: BLE001 - still leased: sent again once the lease runs out
            log.warning("webhook outcomes not written at stop (%s)", type(exc).__name__)

    async def _update(self, delivery: WebhookDelivery, values: dict[str, Any]) -> None:
        async with self.runtime.db.statements() as connection:
            await connection.execute(
                update(_DELIVERIES).where(_DELIVERIES.c.id == delivery.id).values(values)
            )

    async def _reschedule(self, delivery: WebhookDelivery, now: datetime, *, error: str, count: bool) -> None:
        attempts = delivery.attempts + 1 if count else delivery.attempts
        values: dict[str, Any] = {
            "last_error": error[:120],
            "next_attempt_at": now
            + retry_delay(
                max(attempts, 1),
                base=self.settings.webhook_backoff_base_seconds,
                cap=self.settings.webhook_backoff_cap_seconds,
            ),
        }
        if count:
            values.update(attempts=_DELIVERIES.c.attempts + 1, last_attempt_at=now)
        await self._update(delivery, values)
        log.warning("webhook %s to %s failed (%s); retrying", delivery.id, delivery.organisation_id, error)

    async def _disable(self, delivery: WebhookDelivery, now: datetime, *, reason: str) -> None:
        WEBHOOK_FAILURES.labels("endpoint-disabled").inc()
        async with self.runtime.db.transaction() as session:
            await disable_endpoint(
                session, delivery.organisation_id, now=now, reason=reason, failed_delivery=delivery.id
            )
        log.error("webhook endpoint of %s disabled: %s; ops told", delivery.organisation_id, reason)


async def disable_endpoint(
    session: AsyncSession, organisation_id: str, *, now: datetime, reason: str, failed_delivery: str
) -> None:
    """Disable an organisation's endpoint, fail its pending deliveries and escalate every case they concern."""
    state = await session.get(WebhookEndpointState, organisation_id) or WebhookEndpointState(
        organisation_id=organisation_id
    )
    state.disabled_at = now
    state.disabled_reason = reason[:200]
    state.updated_at = now
    session.add(state)
    pending = (
        await session.exec(
            select(WebhookDelivery).where(
                WebhookDelivery.organisation_id == organisation_id,
                col(WebhookDelivery.status) == WebhookStatus.pending,
            )
        )
    ).all()
    cases = set()
    for row in pending:
        row.status = WebhookStatus.failed
        row.last_error = "endpoint disabled" if row.id != failed_delivery else reason[:120]
        if row.id == failed_delivery:
            row.attempts += 1
            row.last_attempt_at = now
        session.add(row)
        cases.add(row.case_id)
    for case_id in sorted(cases, key=str):
        enqueue(
            session,
            CaseEscalated(
                case_id=case_id,
                reason=f"webhooks to {organisation_id} disabled ({reason}); the provider sees offers only by polling",
            ),
        )
    record(
        session, NOTIFY, "disable-webhook-endpoint", case_id=None, detail=f"{organisation_id}: {reason}"[:500]
    )
