"""Prometheus metrics: every family Pathways exports, the HTTP latency middleware and ``/metrics``.

Labels hold only small, fixed vocabularies (a reason code, an outcome, a state, a route *template*,
a consumer name): never identifying data, never a case or offer id, never a raw path (``/areas/LS7 9ZZ``
would put a full postcode in a label). Counters count what happened in this process; gauges that
describe shared state (outbox depth, consumer lag, dead letters, offers by state) are read when scraped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
access_log = logging.getLogger("pathways.access")
# Probes and scrapes: frequent, and not what anyone means by "requests to Pathways".
QUIET_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})

REFERRALS_RECEIVED = Counter(
    "pathways_referrals_received", "Referrals accepted by intake (new ones, not idempotent repeats)", ["risk_band"]
)
REFERRALS_REJECTED = Counter(
    "pathways_referrals_rejected", "Referral submissions intake refused, by reason", ["reason"]
)
CASES_ROUTED = Counter("pathways_cases_routed", "Routing decisions made by the router, by outcome", ["outcome"])
OFFERS = Gauge("pathways_offers", "Offers notify holds, by state", ["state"])
REFERRAL_TO_ACCEPTANCE = Histogram(
    "pathways_referral_to_acceptance_seconds",
    "Time from the referral reaching intake to a provider accepting it",
    buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 24 * 3600, 48 * 3600, 120 * 3600, 240 * 3600),
)
WEBHOOK_DELIVERIES = Counter("pathways_webhook_deliveries", "Webhooks a provider's endpoint accepted")
WEBHOOK_FAILURES = Counter(
    "pathways_webhook_failures", "Webhook attempts that failed, by reason", ["reason"]
)
REQUESTS_REFUSED = Counter(
    "pathways_requests_refused",
    "Requests refused by shared.protection: over a rate limit (by kind of caller) or over the body limit",
    ["reason"],
)
OUTBOX_DEPTH = Gauge("pathways_outbox_depth", "Events committed but not yet published", ["service"])
CONSUMER_PENDING = Gauge(
    "pathways_consumer_pending", "Messages not yet delivered to a durable consumer", ["consumer"]
)
CONSUMER_ACK_PENDING = Gauge(
    "pathways_consumer_ack_pending", "Messages delivered to a consumer and not yet acknowledged", ["consumer"]
)
CONSUMER_REDELIVERED = Gauge(
    "pathways_consumer_redelivered", "Messages a consumer has had delivered more than once", ["consumer"]
)
DEAD_LETTER_DEPTH = Gauge("pathways_dead_letter_depth", "Messages waiting in the dead-letter stream")
AUDIT_UNSEALED_AGE = Gauge(
    "pathways_audit_unsealed_oldest_seconds", "Age of the oldest audit record not yet sealed into the chain (0: none)",
    ["service"],
)
AUDIT_CHAIN_SEQ = Gauge("pathways_audit_chain_seq", "The audit chain head's sequence number", ["service"])
HTTP_DURATION = Histogram(
    "pathways_http_request_duration_seconds",
    "HTTP request latency by route template",
    ["service", "method", "route", "status"],
)

Refresh = Callable[[], Awaitable[None]]


class HttpRequests:
    """ASGI middleware: times each request under its route template (``unmatched`` when none) and
    writes the access-log line, by template too, so a raw path never reaches a label or a log."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            seconds = time.perf_counter() - started
            if template not in QUIET_ROUTES:
                HTTP_DURATION.labels(self.service, method, template, str(status)).observe(seconds)
                access_log.info("%s %s %d %.1f ms", method, template, status, seconds * 1000,
                                extra={"http_method": method, "http_route": template, "http_status": status,
                                       "duration_ms": round(seconds * 1000, 1)})


async def metrics_response(refreshers: list[Refresh], *, timeout: float = 3.0) -> Response:
    """Bring the scrape-time gauges up to date (each within ``timeout``), then render every family."""
    for refresh in refreshers:
        try:
            await asyncio.wait_for(refresh(), timeout)
        except Exception as exc:  # noqa: BLE001 - a gauge that cannot be read keeps its last value
            log.warning("metrics: %s could not be refreshed (%s)", getattr(refresh, "__name__", "gauge"),
                        type(exc).__name__)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def set_consumer_lag(states: list[Any]) -> None:
    for state in states:
        CONSUMER_PENDING.labels(state.consumer).set(state.pending)
        CONSUMER_ACK_PENDING.labels(state.consumer).set(state.ack_pending)
        CONSUMER_REDELIVERED.labels(state.consumer).set(state.redelivered)


async def metrics_endpoint(request: Request) -> Response:
    return await metrics_response(request.app.state.metric_refreshers)
