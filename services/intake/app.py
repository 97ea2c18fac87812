"""Intake service: FHIR referrals in, referral.received out, the referrer's Task kept current."""

from __future__ import annotations

import logging

from cachetools import TTLCache
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import select
from starlette.exceptions import HTTPException

from services.intake import closed_loop, consumer, oauth, retention
from services.intake.api import router
from services.intake.clients import ClientCreate, register
from services.intake.clients import router as clients_router
from services.intake.migrations import MIGRATIONS
from services.intake.settings import IntakeSettings
from services.intake.store import ApiClient
from shared.audit_api import audit_router
from shared.credentials import SAMPLE_DATA
from shared.crypto import FieldCipher
from shared.egress import external_client, policy_for
from shared.fhir import FhirError, Issue, outcome_response
from shared.group_commit import GroupCommit
from shared.ops_users import RemoteOpsVerifier
from shared.problems import busy_problem, problem, validation_errors
from shared.service import Runtime, create_service_app
from shared.state_machine import IllegalTransition

log = logging.getLogger(__name__)

# A synthetic EHR client for development and demos, bound to synthetic ODS codes.
SAMPLE_CLIENT = {
    "id": "sample-ehr",
    "name": "Sample EHR integration (development only)",
    "api_key": "pw_sample_ehr_client",
    "ods_codes": ["Y00001", "Y00002", "RX001"],
}

STATUS_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 409: "conflict",
                413: "too-costly", 415: "not-supported", 429: "throttled", 503: "transient"}


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    field_cipher = FieldCipher.from_config(settings.encryption_keys.get_secret_value(), settings.active_key_id)

    async def setup(runtime: Runtime) -> None:
        app.state.referral_writer = writer = GroupCommit(runtime.db)
        runtime.stop_hooks.append(writer.drain)
        jwks_cache: oauth.JwksCache = app.state.jwks_cache
        jwks_cache.http = external_client(policy_for(settings), timeout=5.0)
        runtime.stop_hooks.append(jwks_cache.http.aclose)
        consumer.register(runtime)
        closed_loop.start(runtime, app.state)
        retention.start(runtime)
        if settings.seed_sample_client:
            async with runtime.db.transaction() as session:
                if (await session.exec(select(ApiClient).limit(1))).first() is None:
                    sample = ClientCreate(id=SAMPLE_CLIENT["id"], name=SAMPLE_CLIENT["name"],
                                          ods_codes=SAMPLE_CLIENT["ods_codes"])
                    await register(session, SAMPLE_DATA, sample, api_key=SAMPLE_CLIENT["api_key"])

    app = create_service_app(
        settings=settings,
        title="Pathways intake",
        description="Receives FHIR referrals from GP and acute EHR systems and tracks each as a FHIR Task.",
        migrations=MIGRATIONS,
        routers=[router, closed_loop.router, clients_router, oauth.router, audit_router("intake")],
        setup=setup,
        fhir_prefix="/fhir",
    )
    app.state.cipher = field_cipher
    app.state.jwks_cache = oauth.JwksCache(settings.jwks_cache_seconds)
    app.state.client_keys = TTLCache(maxsize=10_000, ttl=settings.client_cache_seconds)
    app.state.verify_ops = RemoteOpsVerifier(settings.directory_url)

    # FHIR endpoints answer errors with OperationOutcome; the rest with problem+json.
    async def fhir_error(request: Request, exc: FhirError) -> JSONResponse:
        return outcome_response(exc.status, exc.issues, exc.headers)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return refusal(request.url.path, exc.status_code, str(exc.detail), dict(exc.headers or {}))

    def refusal(path: str, status_code: int, detail: str, headers: dict[str, str]) -> JSONResponse:
        if path.startswith("/fhir"):
            code = STATUS_CODES.get(status_code, "exception")
            return outcome_response(status_code, [Issue(code, detail)], headers)
        response = problem(status_code, detail)
        response.headers.update(headers)
        return response

    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path.startswith("/fhir"):
            return outcome_response(
                400, [Issue("invalid", f"{'.'.join(map(str, e['loc']))}: {e['msg']}") for e in validation_errors(exc)]
            )
        return problem(422, "The request does not match the API's schema.", errors=validation_errors(exc))

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, IntegrityError):
            # Only a concurrent change gets here (retries are handled where they happen): ask to retry.
            log.warning("intake: concurrent change on %s", request.url.path)
            issue = Issue("conflict", "A concurrent change touched this referral; retry the request.")
            return outcome_response(409, [issue])
        # The type only: database errors can quote the values they failed on.
        log.error("intake: database unavailable (%s) on %s", type(exc).__name__, request.url.path)
        issue = Issue("transient", "The referral store is unavailable; nothing was stored. Retry later.")
        if request.url.path.startswith("/fhir"):
            return outcome_response(503, [issue], {"Retry-After": "30"})
        return problem(503, issue.diagnostics)

    def busy(path: str, retry_after: int) -> JSONResponse:
        # Saturated, not broken: no slot or connection within the wait limit. Nothing was stored.
        if not path.startswith("/fhir"):
            return busy_problem(path, retry_after)
        issue = Issue("transient", "Intake is busy; nothing was stored. Retry after the time given.")
        return outcome_response(503, [issue], {"Retry-After": str(retry_after)})

    async def pool_timeout(request: Request, exc: Exception) -> JSONResponse:
        return busy(request.url.path, settings.busy_retry_after_seconds)

    app.state.busy_response = busy
    app.state.refusal = refusal
    # The transaction rolled back, so a 503 means "nothing stored": the EHR can safely retry.
    for error in (DBAPIError, OSError):
        app.add_exception_handler(error, database_unavailable)
    app.add_exception_handler(PoolTimeout, pool_timeout)
    async def illegal_transition(request: Request, exc: IllegalTransition) -> JSONResponse:
        return outcome_response(409, [Issue("business-rule", str(exc), "Task.status")])

    app.add_exception_handler(FhirError, fhir_error)  # type: ignore[arg-type]
    app.add_exception_handler(IllegalTransition, illegal_transition)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    return app
