"""Abuse resistance for every service, in one cheap ASGI middleware: per-caller rate limits, a limit
on the request body, and the security headers of every response.

Request bodies (``<SERVICE>_MAX_BODY_BYTES``): a declared ``Content-Length`` over the limit is refused
before anything is read; otherwise the bytes are counted as they stream in (chunked bodies too) and
the read that passes the limit raises a 413 ``HTTPException``, so the route stops and the service's
own error format (problem+json, OperationOutcome) says so. (FastAPI's ``max_body_size`` does the same
but answers a declared oversize body in plain text, whatever the API's format.)

Rate limits (the maintained ``limits`` library; counters in process memory by default, or in a store
that several replicas share, e.g. Redis, via ``PATHWAYS_RATE_LIMIT_STORAGE``):

- a request that presents a credential (``Authorization`` or ``X-API-Key``) counts against that
  credential, keyed by its SHA-256 (the credential itself is never kept), with the limit of its kind
  (told by the prefix Pathways gives each kind of key; anything else is a plain ``caller``);
- a request without one counts against its client address (``anonymous``);
- every request refused with 401 (a bad key in a header, or a credential posted in a form: a token
  endpoint, a sign-in page) also counts against the client address (``failed-auth``): past that limit
  the address gets 429 for anything, so guessing keys, or making a service look up unknown ones, stops
  early and costs nothing;
- internal calls between the services (``/internal/…``) and the probes are never throttled, not
  even from an address past its ``failed-auth`` limit (a failed authentication there still counts
  against the address for the public routes).

Past a limit: 429 with ``Retry-After`` (problem+json, or an OperationOutcome on FHIR routes: the app's
``state.refusal``), and the request goes no further. If the shared store is unreachable the request is
let through and a warning logged (at most once a minute): throttling must never stop referrals.

The client address is the connection's, or the one uvicorn takes from ``X-Forwarded-For`` when the
proxy is trusted (uvicorn's ``FORWARDED_ALLOW_IPS``: set it to the ingress's addresses).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import limits
from fastapi import FastAPI
from limits.aio.strategies import STRATEGIES, RateLimiter
from limits.storage import storage_from_string
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.admission import PROBE_PATHS
from shared.metrics import REQUESTS_REFUSED
from shared.problems import problem
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

# path, status, detail, headers -> the error response in the API's own format.
Refusal = Callable[[str, int, str, dict[str, str]], Response]

# Per kind of caller, in ``limits`` notation; PATHWAYS_RATE_LIMITS overrides any of them. Generous per
# client, so that no legitimate burst is refused: one EHR integration may send a whole trust's referrals
# at once (bench/intake_load.py drives intake with one client at 16-256 concurrent requests), a
# provider's case system or an ops script may fire dozens of requests together. They stop a runaway
# client or a stolen key from taking a service over; a deployment can tighten them.
DEFAULT_RATE_LIMITS: dict[str, str] = {
    "ehr-client": "1000/second;60000/minute",
    "provider": "200/second;6000/minute",
    "ops": "200/second;6000/minute",  # ops users and commissioners (one kind of credential)
    "caller": "200/second;6000/minute",  # any other credential (e.g. an OAuth2 access token)
    "anonymous": "100/second;3000/minute",  # per client address, no credential
    "failed-auth": "600/minute",  # per client address: requests refused with 401
}
# The prefixes Pathways puts on the credentials it issues (services/*/credentials.py, clients.py; OAuth2
# access tokens, issued to EHR clients, start pw_at_). The synthetic sample EHR client of development
# and demos has its own.
KEY_KINDS: tuple[tuple[str, str], ...] = (("pw_ehr_", "ehr-client"), ("pw_at_", "ehr-client"),
                                          ("pw_sample_ehr_", "ehr-client"), ("pw_prv_", "provider"),
                                          ("pw_ops_", "ops"))
INTERNAL_PREFIX = "/internal/"
WARN_EVERY_SECONDS = 60.0


def parse_rate_limits(overrides: Mapping[str, str]) -> dict[str, list[limits.RateLimitItem]]:
    """The limits in force: the defaults with ``overrides`` applied (an empty string turns a kind off).
    Raises ``ValueError`` on an unknown kind or a limit ``limits`` cannot read."""
    unknown = sorted(set(overrides) - set(DEFAULT_RATE_LIMITS))
    if unknown:
        raise ValueError(f"unknown rate-limit kinds {unknown}; known: {sorted(DEFAULT_RATE_LIMITS)}")
    merged = {**DEFAULT_RATE_LIMITS, **overrides}
    return {kind: limits.parse_many(text) if text.strip() else [] for kind, text in merged.items()}


def credential_kind(credential: str) -> str:
    return next((kind for prefix, kind in KEY_KINDS if credential.startswith(prefix)), "caller")


def presented_credential(scope: Scope) -> str | None:
    """The credential a request presents, as the auth dependencies read it, without parsing the rest."""
    for name, value in scope["headers"]:
        if name == b"x-api-key" and value:
            return value.decode("latin-1")
        if name == b"authorization" and value:
            scheme, _, token = value.decode("latin-1").partition(" ")
            return (token or scheme).strip()
    return None


@dataclass(frozen=True)
class Throttled:
    retry_after: int
    kind: str


class RateLimits:
    """The limiter and the limits of one service."""

    def __init__(self, *, storage: str, strategy: str, overrides: Mapping[str, str], service: str = "") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown rate-limit strategy '{strategy}'; known: {sorted(STRATEGIES)}")
        self.limits = parse_rate_limits(overrides)
        # In a shared store each service keeps its own counters: a limit is per caller *of this service*.
        self.service = service
        self.limiter: RateLimiter = STRATEGIES[strategy](storage_from_string(storage))
        self._warned_at = -math.inf

    async def hit(self, kind: str, key: str) -> Throttled | None:
        """Count one request of ``kind`` for ``key``; say when it may come back if that was one too many."""
        try:
            for item in self.limits[kind]:
                if not await self.limiter.hit(item, self.service, kind, key):
                    stats = await self.limiter.get_window_stats(item, self.service, kind, key)
                    return Throttled(max(1, math.ceil(stats.reset_time - time.time())), kind)
        except Exception as exc:  # noqa: BLE001 - an unreachable store must not stop the service
            self._warn(exc)
        return None

    async def exhausted(self, kind: str, key: str) -> Throttled | None:
        """Whether ``key`` already used up a limit of ``kind``, without counting a request."""
        try:
            for item in self.limits[kind]:
                if not await self.limiter.test(item, self.service, kind, key):
                    stats = await self.limiter.get_window_stats(item, self.service, kind, key)
                    return Throttled(max(1, math.ceil(stats.reset_time - time.time())), kind)
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)
        return None

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("rate limits not applied: the counter store failed (%s)", type(exc).__name__)


def security_headers(*, development: bool) -> list[tuple[bytes, bytes]]:
    """The headers every response carries unless the route set its own."""
    headers = {
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
        # Server-rendered pages with bundled scripts and styles, forms posting to themselves: 'self'
        # is all they need. No framing (clickjacking), no plugins, no <base> tricks.
        "content-security-policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
                                   "form-action 'self'; object-src 'none'",
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-resource-policy": "same-origin",
        # Responses carry case data: no browser or proxy may keep a copy.
        "cache-control": "no-store",
    }
    if not development:
        headers["strict-transport-security"] = "max-age=63072000; includeSubDomains"
    return [(k.encode(), v.encode()) for k, v in headers.items()]


# The interactive API docs load Swagger UI / ReDoc from their CDN with inline bootstrapping.
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
DOCS_CSP = (b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
            b"worker-src 'self' blob:; frame-ancestors 'none'; object-src 'none'")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than the {limit} bytes this service accepts; "
                              "nothing was done.")


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises ``BodyTooLarge`` as soon as the body read so far passes ``limit`` bytes."""
    received = 0

    async def receive_within_limit() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                REQUESTS_REFUSED.labels("body-too-large").inc()
                raise BodyTooLarge(limit)
        return message

    return receive_within_limit


class Protection:
    """Rate limits (``app.state.rate_limits``), the body limit (``app.state.max_body_bytes``) and security
    headers (``app.state.security_headers``); a refused request gets ``app.state.refusal``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        path: str = scope["path"]
        extra: list[tuple[bytes, bytes]] = state.security_headers
        if path in DOCS_PATHS:
            extra = [(k, DOCS_CSP if k == b"content-security-policy" else v) for k, v in extra]
        rate_limits: RateLimits | None = getattr(state, "rate_limits", None)
        if path in PROBE_PATHS:
            rate_limits = None
        credential = presented_credential(scope) if rate_limits is not None else None
        address = scope["client"][0] if scope.get("client") else "unknown"
        started = False

        async def send_protected(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if rate_limits is not None and message["status"] == 401:
                    await rate_limits.hit("failed-auth", address)  # type: ignore[union-attr]
                headers = message.get("headers", [])
                present = {name.lower() for name, _ in headers}
                missing = [(k, v) for k, v in extra if k not in present]
                if missing:
                    message = {**message, "headers": [*headers, *missing]}
            await send(message)

        refused = await self._refusal(scope, state, rate_limits, credential, address)
        if refused is not None:
            await state.refusal(path, *refused)(scope, receive, send_protected)
            return
        max_body: int | None = getattr(state, "max_body_bytes", None)
        try:
            await self.app(scope, receive if max_body is None else limited(receive, max_body), send_protected)
        except BodyTooLarge as exc:
            # Read outside a route (no handler turned it into a response): answer it here.
            if started:
                raise
            await state.refusal(path, 413, exc.detail, {"Connection": "close"})(scope, receive, send_protected)

    @staticmethod
    async def _refusal(scope: Scope, state: Any, rate_limits: RateLimits | None, credential: str | None,
                       address: str) -> tuple[int, str, dict[str, str]] | None:
        """Why this request is refused before it reaches the service (status, detail, headers), if it is."""
        max_body: int | None = getattr(state, "max_body_bytes", None)
        declared = declared_length(scope) if max_body is not None else None
        if declared is not None and max_body is not None and declared > max_body:
            REQUESTS_REFUSED.labels("body-too-large").inc()
            return 413, BodyTooLarge(max_body).detail, {"Connection": "close"}
        if rate_limits is None:
            return None
        if scope["path"].startswith(INTERNAL_PREFIX):
            # Never throttled, not even from an address that failed authentication too often: the other
            # services may share it (one host in development, a node's address behind NAT).
            return None
        throttled = await rate_limits.exhausted("failed-auth", address)
        if throttled is None:
            if credential is not None:
                kind = credential_kind(credential)
                throttled = await rate_limits.hit(kind, hashlib.sha256(credential.encode()).hexdigest())
            else:
                throttled = await rate_limits.hit("anonymous", address)
        if throttled is None:
            return None
        REQUESTS_REFUSED.labels(f"rate-limit-{throttled.kind}").inc()
        detail = ("Too many refused credentials from this address; nothing was done. Retry after the time given."
                  if throttled.kind == "failed-auth" else
                  "Too many requests; nothing was done. Retry after the time given.")
        return 429, detail, {"Retry-After": str(throttled.retry_after)}


def install(app: FastAPI, settings: ServiceSettings) -> None:
    """Rate limits and security headers on ``app``, as ``settings`` say; refusals as problem+json until
    the service sets its own ``app.state.refusal`` (intake answers FHIR routes with OperationOutcomes)."""
    app.state.rate_limits = RateLimits(storage=settings.rate_limit_storage, strategy=settings.rate_limit_strategy,
                                       overrides=settings.rate_limits, service=settings.service_name)
    app.state.security_headers = security_headers(development=settings.is_development)
    app.state.refusal = problem_refusal
    app.state.max_body_bytes = settings.max_body_bytes
    app.add_middleware(Protection)


def problem_refusal(path: str, status: int, detail: str, headers: dict[str, str]) -> Response:
    response = problem(status, detail)
    response.headers.update(headers)
    return response
