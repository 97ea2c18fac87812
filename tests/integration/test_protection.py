"""Abuse resistance on every service (shared.protection): security headers on every response, request
bodies limited while they stream in, per-caller rate limits with 429 and Retry-After."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.directory.app import create_app as create_directory
from services.directory.settings import DirectorySettings
from services.intake.app import SAMPLE_CLIENT
from services.intake.app import create_app as create_intake
from services.intake.clients import ClientCreate, register
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from services.router.app import create_app as create_router
from services.router.settings import RouterSettings
from shared.credentials import SAMPLE_DATA
from tests.harness import as_service, running, service_auth
from tests.integration.conftest import EHR, intake_settings

LIMIT = 2_000
TOO_BIG = json.dumps({"name": "x" * (LIMIT + 10)}).encode()
# A route with a body on each service (the limit applies before anything else is looked at).
BODY_ROUTES: dict[str, tuple[Callable[..., FastAPI], Callable[..., Any], str]] = {
    "intake": (create_intake, lambda **kw: intake_settings("nats://127.0.0.1:1", "sqlite+aiosqlite://", "k1:" + "A" * 43 + "=", **kw),
               "/ops/clients"),
    "router": (create_router, RouterSettings, "/explain"),
    "directory": (create_directory, DirectorySettings, "/organisations"),
    "notify": (create_notify, NotifySettings, "/offers/00000000-0000-0000-0000-000000000000/decline"),
}
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def client_of(app: FastAPI, address: str = "203.0.113.10") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://t")


async def chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b" " * size


@pytest.mark.parametrize("service", list(BODY_ROUTES))
async def test_every_response_carries_the_security_headers(service: str):
    create, settings, path = BODY_ROUTES[service]
    async with client_of(create(settings(max_body_bytes=LIMIT))) as client:
        answers = [await client.get("/healthz"), await client.get("/no-such-route"),
                   await client.post(path, content=TOO_BIG, headers={"content-type": "application/json"})]
    for response in answers:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value, (response.request.url, name)
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        # Outside development, browsers must only ever use HTTPS.
        assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_development_sends_no_hsts_and_the_api_docs_may_load_their_ui():
    create, settings, _ = BODY_ROUTES["directory"]
    async with client_of(create(settings(environment="development"))) as client:
        health, docs = await client.get("/healthz"), await client.get("/docs")
    assert "strict-transport-security" not in health.headers
    assert "https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]


@pytest.mark.parametrize("service", list(BODY_ROUTES))
async def test_request_bodies_over_the_limit_get_413_declared_or_streamed(service: str):
    create, settings, path = BODY_ROUTES[service]
    async with client_of(create(settings(max_body_bytes=LIMIT))) as client:
        declared = await client.post(path, content=TOO_BIG, headers={"content-type": "application/json"})
        # No Content-Length: chunked, counted as it arrives, refused at the chunk that passes the limit.
        streamed = await client.post(path, content=chunks(100, 500), headers={"content-type": "application/json"})
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert f"larger than the {LIMIT} bytes this service accepts" in response.json()["detail"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_fhir_body_over_the_limit_gets_an_operation_outcome_even_when_chunked(nats_server, database_url,
                                                                                     encryption_keys):
    app = create_intake(intake_settings(nats_server.url, database_url, encryption_keys, max_body_bytes=LIMIT))
    async with running(app) as intake:
        response = await intake.post("/fhir/Bundle", content=chunks(100, 500), headers=EHR)
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"


@pytest.fixture
async def throttled_intake(nats_server, database_url, encryption_keys) -> AsyncIterator[tuple[FastAPI, str]]:
    """Intake with tiny limits, and a second EHR client besides the sample one."""
    app = create_intake(intake_settings(nats_server.url, database_url, encryption_keys, **service_auth("intake"),
                                        rate_limits={"ehr-client": "3/second", "failed-auth": "3/minute",
                                                     "anonymous": "2/minute"}))
    async with running(app):
        async with app.state.runtime.db.transaction() as session:
            other = await register(session, SAMPLE_DATA, ClientCreate(id="other-ehr", name="Another EHR (synthetic)",
                                                                      ods_codes=["Y00003"]))
        yield app, other.api_key


TASK = "/fhir/Task/00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_caller_over_its_limit_gets_429_with_retry_after_others_are_unaffected_and_the_window_resets(
        throttled_intake):
    app, other_key = throttled_intake
    sample = {"Authorization": f"Bearer {SAMPLE_CLIENT['api_key']}"}
    async with client_of(app) as client:
        for _ in range(3):
            assert (await client.get(TASK, headers=sample)).status_code == 404
        throttled = await client.get(TASK, headers=sample)
        assert throttled.status_code == 429
        assert throttled.json()["resourceType"] == "OperationOutcome"
        assert throttled.json()["issue"][0]["code"] == "throttled"
        retry_after = int(throttled.headers["Retry-After"])
        scraped = (await client.get("/metrics")).text
        assert 'pathways_requests_refused_total{reason="rate-limit-ehr-client"}' in scraped
        assert retry_after == 1  # the window is a second long
        # Another client, from the same address, has its own allowance.
        assert (await client.get(TASK, headers={"X-API-Key": other_key})).status_code == 404
        # The probes and internal calls between the services are never throttled.
        for _ in range(5):
            assert (await client.get("/healthz")).status_code == 200
        # Once the time it was told has passed, the caller is served again.
        await asyncio.sleep(retry_after)
        assert (await client.get(TASK, headers=sample)).status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_refused_credentials_count_against_the_address_so_guessing_keys_stops(throttled_intake):
    app, other_key = throttled_intake
    async with client_of(app, "198.51.100.7") as guesser, client_of(app, "198.51.100.8") as neighbour:
        for guess in range(3):
            assert (await guesser.get(TASK, headers={"Authorization": f"Bearer pw_ehr_guess{guess}"})).status_code == 401
        # Past the limit the address is refused before any look-up, even with a real key...
        blocked = await guesser.get(TASK, headers={"X-API-Key": other_key})
        assert blocked.status_code == 429 and "refused credentials" in blocked.json()["issue"][0]["diagnostics"]
        assert int(blocked.headers["Retry-After"]) >= 1
        # ...or none (a credential posted in a form: a token endpoint, a sign-in page)...
        assert (await guesser.get("/fhir/metadata")).status_code == 429
        # ...while the same key from another address works.
        assert (await neighbour.get(TASK, headers={"X-API-Key": other_key})).status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_anonymous_callers_are_limited_by_address_in_problem_json_off_the_fhir_api(throttled_intake):
    app, _ = throttled_intake
    async with client_of(app, "192.0.2.50") as client, client_of(app, "192.0.2.51") as elsewhere:
        statuses = [(await client.get("/ops/clients")).status_code for _ in range(3)]
        assert statuses[:2] == [401, 401] and statuses[2] == 429
        throttled = await client.get("/ops/clients")
        assert throttled.headers["content-type"] == "application/problem+json" and "Retry-After" in throttled.headers
        assert (await elsewhere.get("/ops/clients")).status_code == 401


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_internal_calls_between_services_are_not_throttled(nats_server, database_url, encryption_keys):
    app = create_intake(intake_settings(nats_server.url, database_url, encryption_keys, **service_auth("intake"),
                                        rate_limits={"caller": "1/minute", "anonymous": "1/minute",
                                                     "failed-auth": "2/minute"}))
    path = "/internal/referrals/00000000-0000-0000-0000-000000000000/handoff"
    async with running(app), client_of(app, "10.0.0.3") as notify:
        # Someone on the same host fails authentication until the address is blocked for public routes...
        for guess in range(2):
            assert (await notify.get(TASK, headers={"Authorization": f"Bearer pw_ehr_guess{guess}"})).status_code == 401
        assert (await notify.get("/fhir/metadata")).status_code == 429
        # ...and the service calling from there is still served, however often it calls.
        statuses = {(await notify.get(path, params={"organisation_id": "org-x"},
                                      headers=as_service("notify"))).status_code
                    for _ in range(5)}
    assert 429 not in statuses


def test_unknown_rate_limit_kinds_and_unreadable_limits_stop_the_service_starting():
    with pytest.raises(ValueError, match="unknown rate-limit kinds"):
        create_directory(DirectorySettings(rate_limits={"ehr": "10/second"}))
    with pytest.raises(ValueError):
        create_directory(DirectorySettings(rate_limits={"ops": "ten a second"}))
