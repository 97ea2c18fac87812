"""The referrer's side of the closed loop: FHIR R4 Subscriptions (rest-hook, id-only) for its Tasks,
with the Subscriptions R5 Backport IG's handshake, heartbeats and event numbering, and
``GET /fhir/Task?_lastUpdated=gt…`` for EHRs that poll.

A notification only says *which* Task changed (id-only): the EHR reads the Task with its own key.
Notifications are rows in the database, numbered per Subscription in the transaction that changed the
Task, and delivered by a worker that retries with backoff across restarts; a Subscription whose
endpoint keeps failing past the retry period goes to status ``error``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import JSON, Column, Table, bindparam, update
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.api import ClientDep, read_fhir_json
from services.intake.settings import IntakeSettings
from shared.background import PeriodicWorker
from shared.db import insert_at_commit, utc_field
from shared.delivery import endpoint_refusal, retry_delay
from shared.egress import (
    MAX_HEADERS,
    EndpointRefused,
    external_client,
    header_refusal,
    policy_for,
    registration_refusal,
)
from shared.events import utcnow
from shared.fhir import CANONICAL, FHIR_JSON, FhirError, FhirResponse, Issue
from shared.openapi import errors, fhir_resource
from shared.service import Runtime, RuntimeDep, SessionDep

log = logging.getLogger(__name__)

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
TOPIC = f"{CANONICAL}/SubscriptionTopic/referral-task"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
BATCH = 50


class ClosedLoopSettings(BaseSettings):
    """Subscription delivery (``INTAKE_SUBSCRIPTION_…``); kept apart from intake's own settings."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_SUBSCRIPTION_", extra="ignore")

    # The base the EHR knows this FHIR API by: references in notifications are absolute.
    public_url: str = "http://127.0.0.1:8001"
    poll_seconds: float = 5.0
    # How long after a commit woke it the notifier waits before looking for work (batches the wakes).
    wake_linger_seconds: float = 0.2
    backoff_base_seconds: float = 10.0
    backoff_cap_seconds: float = 3600.0
    retry_hours: float = 24.0
    timeout_seconds: float = 10.0
    # Shortest heartbeat period a client may ask for, in seconds.
    min_heartbeat_seconds: int = 1


class SubscriptionStatus(StrEnum):
    requested = "requested"
    active = "active"
    error = "error"
    off = "off"


class FhirSubscription(SQLModel, table=True):
    __tablename__ = "fhir_subscription"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    client_id: str = Field(max_length=80, index=True)
    status: str = Field(default=SubscriptionStatus.requested, max_length=20, index=True)
    endpoint: str = Field(max_length=500)
    # Headers the EHR asked to receive (its own credentials): stored, sent, never logged.
    headers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    heartbeat_seconds: int | None = None
    reason: str = Field(default="", max_length=200)
    events_since_start: int = 0
    error: str | None = Field(default=None, max_length=120)
    created_at: datetime = utc_field(default_factory=utcnow)
    last_sent_at: datetime | None = utc_field(default=None)


class NotificationKind(StrEnum):
    handshake = "handshake"
    heartbeat = "heartbeat"
    event = "event-notification"


class SubscriptionNotification(SQLModel, table=True):
    __tablename__ = "subscription_notification"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    subscription_id: UUID = Field(foreign_key="fhir_subscription.id", index=True)
    kind: str = Field(max_length=30)
    event_number: int = 0
    task_id: UUID | None = None
    status: str = Field(default="pending", max_length=20, index=True)
    attempts: int = 0
    created_at: datetime = utc_field(default_factory=utcnow)
    next_attempt_at: datetime = utc_field(default_factory=utcnow, index=True)
    last_error: str | None = Field(default=None, max_length=120)


TABLES = [FhirSubscription, SubscriptionNotification]
router = APIRouter(tags=["fhir"])


def _fhir(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return FhirResponse(body, status_code=status, headers=headers)


def _ext(element: dict[str, Any] | None, name: str) -> Any:
    for ext in (element or {}).get("extension", []):
        if ext.get("url") == f"{BACKPORT}/{name}":
            return next((v for k, v in ext.items() if k.startswith("value")), None)
    return None


def subscription_resource(sub: FhirSubscription) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": sub.endpoint,
        "payload": FHIR_JSON,
        "_payload": {"extension": [{"url": f"{BACKPORT}/backport-payload-content", "valueCode": "id-only"}]},
    }
    if sub.heartbeat_seconds:
        channel["extension"] = [
            {"url": f"{BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": sub.heartbeat_seconds}
        ]
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": str(sub.id),
        "meta": {"profile": [f"{BACKPORT}/backport-subscription"]},
        "status": sub.status,
        "reason": sub.reason,
        "criteria": TOPIC,
        "channel": channel,
    }
    if sub.error:
        resource["error"] = sub.error
    return resource


def parse_subscription(body: dict[str, Any], *, development: bool, min_heartbeat: int) -> dict[str, Any]:
    """Check a Subscription a referrer posts: our topic, rest-hook, id-only, an allowed endpoint."""
    issues = []
    if body.get("resourceType") != "Subscription":
        raise FhirError(422, [Issue("structure", "The body must be a FHIR Subscription.", "resourceType")])
    if body.get("criteria") != TOPIC:
        issues.append(
            Issue("value", f"Subscription.criteria must be the topic {TOPIC}.", "Subscription.criteria")
        )
    channel = body.get("channel") or {}
    if channel.get("type") != "rest-hook":
        issues.append(
            Issue("not-supported", "Only rest-hook channels are supported.", "Subscription.channel.type")
        )
    content = _ext(channel.get("_payload"), "backport-payload-content") or "id-only"
    if content != "id-only":
        issues.append(
            Issue(
                "not-supported",
                "Only id-only payloads are sent: read the Task with your own key.",
                "Subscription.channel.payload",
            )
        )
    endpoint = channel.get("endpoint") or ""
    refusal = endpoint_refusal(endpoint, development=development) if endpoint else "an endpoint is required"
    if refusal:
        issues.append(
            Issue("value", f"Subscription.channel.endpoint: {refusal}.", "Subscription.channel.endpoint")
        )
    heartbeat = _ext(channel, "backport-heartbeat-period")
    if heartbeat is not None and (not isinstance(heartbeat, int) or heartbeat < min_heartbeat):
        issues.append(
            Issue(
                "value", f"The heartbeat period must be at least {min_heartbeat} s.", "Subscription.channel"
            )
        )
    headers = channel.get("header") or []
    if not isinstance(headers, list) or len(headers) > MAX_HEADERS:
        issues.append(
            Issue(
                "value",
                f"channel.header is a list of at most {MAX_HEADERS} 'Name: value' headers.",
                "Subscription.channel.header",
            )
        )
    else:
        for header in headers:
            if (why := header_refusal(header)) is not None:
                issues.append(Issue("value", f"channel.header: {why}.", "Subscription.channel.header"))
    if issues:
        raise FhirError(422, issues)
    return {
        "endpoint": endpoint,
        "heartbeat_seconds": heartbeat,
        "headers": list(headers),
        "reason": str(body.get("reason") or "")[:200],
    }


def _settings(request: Request) -> ClosedLoopSettings:
    return request.app.state.closed_loop_settings  # type: ignore[no-any-return]


@router.post(
    "/fhir/Subscription",
    status_code=201,
    summary="Subscribe to this client's Tasks (rest-hook, id-only; Subscriptions Backport IG)",
    response_class=FhirResponse,
    responses={
        **fhir_resource("Subscription", 201, "The Subscription, requested (active after the handshake)"),
        **errors(400, 413, 415, 422),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Subscription"}}},
        }
    },
)
async def create_subscription(
    request: Request, client: ClientDep, runtime: RuntimeDep, session: SessionDep
) -> JSONResponse:
    settings: IntakeSettings = runtime.settings  # type: ignore[assignment]
    body = await read_fhir_json(request, settings)
    fields = parse_subscription(
        body, development=settings.is_development, min_heartbeat=_settings(request).min_heartbeat_seconds
    )
    # An EHR client chooses this address: never one inside Pathways' network (shared.egress).
    if (why := await registration_refusal(fields["endpoint"], policy_for(settings))) is not None:
        raise FhirError(
            422, [Issue("value", f"Subscription.channel.endpoint: {why}.", "Subscription.channel.endpoint")]
        )
    sub = FhirSubscription(client_id=client.id, **fields)
    async with runtime.db.transaction(session):
        session.add(sub)
        await session.flush()
        # The handshake goes first; the Subscription is active once the endpoint answered it.
        session.add(SubscriptionNotification(subscription_id=sub.id, kind=NotificationKind.handshake))
    return _fhir(subscription_resource(sub), 201, {"Location": f"/fhir/Subscription/{sub.id}"})


async def _own_subscription(session: AsyncSession, client_id: str, subscription_id: str) -> FhirSubscription:
    try:
        sub = await session.get(FhirSubscription, UUID(subscription_id))
    except ValueError:
        sub = None
    if sub is None or sub.client_id != client_id:
        raise FhirError(404, [Issue("not-found", f"No Subscription with id '{subscription_id}'.")])
    return sub


@router.get(
    "/fhir/Subscription/{subscription_id}",
    summary="A Subscription and its status",
    response_class=FhirResponse,
    responses={**fhir_resource("Subscription"), **errors(404)},
)
async def read_subscription(subscription_id: str, client: ClientDep, session: SessionDep) -> JSONResponse:
    return _fhir(subscription_resource(await _own_subscription(session, client.id, subscription_id)))


@router.delete(
    "/fhir/Subscription/{subscription_id}",
    summary="Stop a Subscription",
    response_class=FhirResponse,
    responses={**fhir_resource("Subscription", description="The Subscription, off"), **errors(404)},
)
async def delete_subscription(
    subscription_id: str, client: ClientDep, runtime: RuntimeDep, session: SessionDep
) -> JSONResponse:
    async with runtime.db.transaction(session):
        sub = await _own_subscription(session, client.id, subscription_id)
        sub.status = SubscriptionStatus.off
        session.add(sub)
    return _fhir(subscription_resource(sub))


_SUBSCRIPTIONS: Table = FhirSubscription.__table__  # type: ignore[attr-defined]
_NOTIFICATIONS: Table = SubscriptionNotification.__table__  # type: ignore[attr-defined]
# Built once (Core): run in the consumer's transaction for every Task change.
_ACTIVE_SUBSCRIPTIONS = select(_SUBSCRIPTIONS.c.id).where(
    _SUBSCRIPTIONS.c.client_id == bindparam("client_id"), _SUBSCRIPTIONS.c.status == SubscriptionStatus.active
)
# An atomic increment: two Tasks changing at once still get distinct, gap-free numbers.
_NEXT_EVENT_NUMBER = (
    update(_SUBSCRIPTIONS)
    .where(_SUBSCRIPTIONS.c.id == bindparam("subscription_id"))
    .values(events_since_start=_SUBSCRIPTIONS.c.events_since_start + 1)
    .returning(_SUBSCRIPTIONS.c.events_since_start)
)


async def task_changed(session: AsyncSession, *, task_id: UUID, client_id: str) -> None:
    """Number and queue one id-only notification per active Subscription of the Task's client.

    Called in the transaction that changed the Task, so a notification exists exactly when the change does.
    """
    connection = await session.connection()
    subs = (await connection.execute(_ACTIVE_SUBSCRIPTIONS, {"client_id": client_id})).scalars().all()
    for sub_id in subs:
        number = (await connection.execute(_NEXT_EVENT_NUMBER, {"subscription_id": sub_id})).scalar_one()
        now = utcnow()
        insert_at_commit(
            session,
            _NOTIFICATIONS,
            {
                "id": uuid4(),
                "subscription_id": sub_id,
                "kind": NotificationKind.event,
                "event_number": number,
                "task_id": task_id,
                "status": "pending",
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
                "last_error": None,
            },
        )


def notification_bundle(
    sub: FhirSubscription, note: SubscriptionNotification, *, base: str, now: datetime
) -> dict[str, Any]:
    """A Backport IG notification Bundle (history): a SubscriptionStatus, then the focus Task's id only."""
    sub_url = f"{base}/fhir/Subscription/{sub.id}"
    events = (
        0
        if note.kind == NotificationKind.handshake
        else (note.event_number if note.kind == NotificationKind.event else sub.events_since_start)
    )
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": sub_url}},
        {"name": "topic", "valueCanonical": TOPIC},
        {
            "name": "status",
            "valueCode": sub.status if note.kind != NotificationKind.handshake else "requested",
        },
        {"name": "type", "valueCode": note.kind},
        {"name": "events-since-subscription-start", "valueString": str(events)},
    ]
    entries: list[dict[str, Any]] = []
    if note.kind == NotificationKind.event and note.task_id is not None:
        task_url = f"{base}/fhir/Task/{note.task_id}"
        parameters.append(
            {
                "name": "notification-event",
                "part": [
                    {"name": "event-number", "valueString": str(note.event_number)},
                    {"name": "timestamp", "valueInstant": note.created_at.isoformat()},
                    {"name": "focus", "valueReference": {"reference": task_url}},
                ],
            }
        )
        entries.append(
            {
                "fullUrl": task_url,
                "request": {"method": "PUT", "url": f"Task/{note.task_id}"},
                "response": {"status": "200"},
            }
        )
    status_entry = {
        "fullUrl": f"urn:uuid:{note.id}",
        "resource": {
            "resourceType": "Parameters",
            "id": str(note.id),
            "meta": {"profile": [STATUS_PROFILE]},
            "parameter": parameters,
        },
        "request": {"method": "GET", "url": f"{sub_url}/$status"},
        "response": {"status": "200"},
    }
    return {
        "resourceType": "Bundle",
        "id": str(uuid4()),
        "type": "history",
        "timestamp": now.isoformat(),
        "entry": [status_entry, *entries],
    }


# Built once: the notifier looks for due notifications on every wake.
_DUE = (
    select(SubscriptionNotification)
    .where(
        SubscriptionNotification.status == "pending",
        col(SubscriptionNotification.next_attempt_at) <= bindparam("now"),
    )
    .order_by(col(SubscriptionNotification.created_at), col(SubscriptionNotification.event_number))
    .limit(bindparam("batch"))
)


class SubscriptionNotifier:
    """Delivers queued notifications and sends heartbeats to quiet Subscriptions."""

    def __init__(self, runtime: Runtime, settings: ClosedLoopSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        # Endpoints are the EHR clients' choice: a client that calls only public addresses, checked at
        # each connection (shared.egress), never the internal client.
        self.http = external_client(policy_for(runtime.settings), timeout=settings.timeout_seconds)
        # Every commit wakes it (a Task change may have queued a notification); under load a short linger
        # turns a commit per referral into a few steps per second (issue 9).
        self.worker = PeriodicWorker(
            "intake-subscriptions",
            self.step,
            interval=settings.poll_seconds,
            linger=settings.wake_linger_seconds,
        )
        runtime.db.on_commit.append(self.worker.wake)
        self._heartbeats_checked = datetime.min.replace(tzinfo=UTC)

    async def step(self) -> bool:
        now = utcnow()
        # Woken by every commit (many a second under load), but heartbeats are periods of seconds: looking
        # for due ones once per shortest period is enough (issue 9's profile: two queries per wake).
        if now >= self._heartbeats_checked + timedelta(seconds=self.settings.min_heartbeat_seconds):
            self._heartbeats_checked = now
            await self._queue_heartbeats(now)
        async with self.runtime.db.session() as session:
            due = (await session.exec(_DUE, params={"now": now, "batch": BATCH})).all()
        for note in due:
            await self._deliver(note)
        return len(due) == BATCH

    async def _queue_heartbeats(self, now: datetime) -> None:
        # Read first and write only when a heartbeat is due: an empty commit would wake this worker again.
        async with self.runtime.db.session() as session:
            subs = (
                await session.exec(
                    select(FhirSubscription).where(
                        FhirSubscription.status == SubscriptionStatus.active,
                        col(FhirSubscription.heartbeat_seconds).is_not(None),
                    )
                )
            ).all()
            busy = set(
                (
                    await session.exec(
                        select(SubscriptionNotification.subscription_id).where(
                            SubscriptionNotification.status == "pending"
                        )
                    )
                ).all()
            )
            # A Subscription with a notification still on its way needs no heartbeat.
            due = [
                s.id
                for s in subs
                if s.id not in busy
                and (s.last_sent_at or s.created_at) + timedelta(seconds=s.heartbeat_seconds or 0) <= now
            ]
        for sub_id in due:
            async with self.runtime.db.transaction() as session:
                sub = await session.get(FhirSubscription, sub_id)
                assert sub is not None
                session.add(SubscriptionNotification(subscription_id=sub_id, kind=NotificationKind.heartbeat))
                # Counts as sent for the heartbeat clock, so a failing endpoint is not flooded.
                sub.last_sent_at = now
                session.add(sub)

    async def _deliver(self, note: SubscriptionNotification) -> None:
        now = utcnow()
        lease = timedelta(seconds=self.settings.timeout_seconds * 3)
        async with self.runtime.db.transaction() as session:
            claimed = await session.exec(  # type: ignore[call-overload]
                update(SubscriptionNotification)
                .where(
                    col(SubscriptionNotification.id) == note.id,
                    col(SubscriptionNotification.status) == "pending",
                    col(SubscriptionNotification.next_attempt_at) <= now,
                )
                .values(next_attempt_at=now + lease)
            )
            if claimed.rowcount != 1:
                return
            sub = await session.get(FhirSubscription, note.subscription_id)
        assert sub is not None
        if sub.status in (SubscriptionStatus.off, SubscriptionStatus.error):
            await self._settle(note, "dropped", f"subscription {sub.status}")
            return
        body = json.dumps(notification_bundle(sub, note, base=self.settings.public_url, now=now))
        headers = {"content-type": FHIR_JSON}
        for header in sub.headers:
            name, _, value = header.partition(":")
            headers[name.strip()] = value.strip()
        refused = False
        try:
            response = await self.http.post(
                sub.endpoint,
                content=body.encode(),
                headers=headers,
                timeout=self.settings.timeout_seconds,
                follow_redirects=False,
            )
            error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        except EndpointRefused as exc:
            # The endpoint's name now resolves to an address Pathways does not call: nothing was sent,
            # and no retry can fix it: the Subscription goes to error and the client must fix it.
            error, refused = str(exc), True
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        async with self.runtime.db.transaction() as session:
            row = await session.get(SubscriptionNotification, note.id)
            sub_row = await session.get(FhirSubscription, note.subscription_id)
            assert row is not None and sub_row is not None
            row.attempts += 1
            if error is None:
                row.status = "delivered"
                sub_row.last_sent_at = now
                if note.kind == NotificationKind.handshake and sub_row.status == SubscriptionStatus.requested:
                    sub_row.status = SubscriptionStatus.active
            elif refused or now - row.created_at >= timedelta(hours=self.settings.retry_hours):
                row.status = "failed"
                row.last_error = error[:120]
                sub_row.status = SubscriptionStatus.error
                sub_row.error = (
                    error if refused else f"endpoint failing for {self.settings.retry_hours:g} h ({error})"
                )[:120]
                log.error("subscription %s: endpoint failing past the retry period; status error", sub_row.id)
            else:
                row.last_error = error
                row.next_attempt_at = now + retry_delay(
                    row.attempts,
                    base=self.settings.backoff_base_seconds,
                    cap=self.settings.backoff_cap_seconds,
                )
            session.add(row)
            session.add(sub_row)

    async def _settle(self, note: SubscriptionNotification, status: str, error: str) -> None:
        async with self.runtime.db.transaction() as session:
            row = await session.get(SubscriptionNotification, note.id)
            assert row is not None
            row.status = status
            row.last_error = error
            session.add(row)


def start(runtime: Runtime, app_state: Any) -> None:
    """Run the notifier for the service's lifetime."""
    settings = ClosedLoopSettings()
    app_state.closed_loop_settings = settings
    notifier = SubscriptionNotifier(runtime, settings)
    notifier.worker.start()
    runtime.stop_hooks.append(notifier.http.aclose)
    runtime.stop_hooks.append(notifier.worker.stop)
