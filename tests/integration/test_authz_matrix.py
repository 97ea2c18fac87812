"""The authorisation matrix (issue 13): every route of every service, read from each app's routes, called
with no credential, as each role, as the same role from another organisation, and as the right and a
wrong service, against the whole system running as processes. The expected answers are in
``tests/integration/authz_table.py``; a route without a row there fails this test."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from services.directory.app import create_app as create_directory
from services.intake.app import SAMPLE_CLIENT
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from services.launcher import System, free_port, service_credential_variable
from services.notify.app import create_app as create_notify
from services.router.app import create_app as create_router
from tests.conftest import EXAMPLES
from tests.integration.authz_table import CALLERS, TABLE, Row

PROVIDER_KEY = "pw_sample_aire_valley_da"  # the sample directory's Aire Valley DA
OTHER_PROVIDER_KEY = "pw_sample_kinara"  # another organisation's
ORDER = ("directory", "router", "notify", "intake")  # the provider accepts (notify) before intake's release row
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def apps() -> dict[str, FastAPI]:
    """Each service's app as built (not started): its routes are what the matrix must cover."""
    key = "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    return {"intake": create_intake(IntakeSettings(encryption_keys=key, active_key_id="k1")),
            "router": create_router(), "directory": create_directory(), "notify": create_notify()}


def routes_of(app: FastAPI) -> set[tuple[str, str]]:
    return {(method, context.path) for context in iter_route_contexts(app.routes)
            for method in (context.methods or ()) if method not in IGNORED_METHODS}


def test_every_route_has_a_row_and_every_row_a_route() -> None:
    built = apps()
    missing = {s: sorted(routes_of(app) - set(TABLE.get(s, {}))) for s, app in built.items()}
    stale = {s: sorted(set(TABLE.get(s, {})) - routes_of(app)) for s, app in built.items()}
    assert not any(missing.values()), f"routes without a row in authz_table.py: {missing}"
    assert not any(stale.values()), f"rows for routes that no longer exist: {stale}"


def test_every_route_that_needs_a_credential_declares_its_security_scheme() -> None:
    for service, app in apps().items():
        document = app.openapi()
        for (method, path), row in TABLE[service].items():
            operation = document["paths"].get(path, {}).get(method.lower())
            if operation is None:
                continue  # not in the OpenAPI (openapi.json itself)
            if row.expect["none"] == 401:
                assert operation.get("security"), f"{service} {method} {path} declares no security scheme"
            if path.startswith("/internal/"):
                assert operation["security"] == [{"serviceCredential": []}], f"{service} {method} {path}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ports = {name: free_port() for name in ("intake", "router", "directory", "notify", "nats", "nats_monitor")}
    system = System(data_dir=tmp_path_factory.mktemp("authz") / ".data", ports=ports)
    system.start(timeout=90)
    try:
        yield build_world(system)
    finally:
        system.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def build_world(system: System) -> dict[str, Any]:
    env = system.environment()
    ops = bearer(env["PATHWAYS_OPS_KEY"])
    other_client = httpx.post(f"{system.url('intake')}/ops/clients", headers=ops, timeout=30,
                              json={"id": "other-ehr", "name": "Other EHR (synthetic)", "ods_codes": ["Z99999"]})
    assert other_client.status_code == 201, other_client.text
    commissioner = httpx.post(f"{system.url('directory')}/ops-users", headers=ops, timeout=30,
                              json={"id": "cara.commissioner", "role": "commissioner"})
    assert commissioner.status_code == 201, commissioner.text
    bundle = json.loads((EXAMPLES / "gp-referral.json").read_text())
    bundle["identifier"]["value"] = "GP-REF-AUTHZ-MATRIX"
    referrer = bearer(SAMPLE_CLIENT["api_key"])
    submitted = httpx.post(f"{system.url('intake')}/fhir/Bundle", json=bundle, timeout=30,
                           headers={**referrer, "Content-Type": "application/fhir+json"})
    assert submitted.status_code == 202, submitted.text
    case_id = submitted.json()["id"]
    offer = wait_for_offer(system, case_id)
    consent = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Consent")
    consent = {k: v for k, v in consent.items() if k != "id"}
    credentials = {
        "none": {}, "referrer": referrer, "referrer_other": bearer(other_client.json()["api_key"]),
        "provider": bearer(PROVIDER_KEY), "provider_other": bearer(OTHER_PROVIDER_KEY), "ops": ops,
        "commissioner": bearer(commissioner.json()["api_key"]),
    }
    return {
        "system": system, "env": env, "credentials": credentials,
        "bodies": {"referral": bundle, "consent": consent},
        "values": {"case": case_id, "offer": offer["id"], "service": offer["service_id"],
                   "service_type": offer["service_type"], "org": "aire-valley-da",
                   "missing": "7b5e0a4e-0000-4000-8000-00000000dead"},
    }


def wait_for_offer(system: System, case_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        offers = httpx.get(f"{system.url('notify')}/offers", headers=bearer(PROVIDER_KEY), timeout=30).json()
        found = [o for o in offers if o["case_id"] == case_id]
        if found:
            return found[0]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, "no offer reached the sample provider"
        time.sleep(0.2)


def headers_for(world: dict[str, Any], caller: str, row: Row) -> dict[str, str]:
    if caller == "service":
        return bearer(world["env"][service_credential_variable(row.service)])
    if caller == "service_wrong":
        return bearer(world["env"][service_credential_variable(row.wrong_service)])
    return dict(world["credentials"][caller])


def call(world: dict[str, Any], service: str, method: str, row: Row, caller: str) -> httpx.Response:
    url = world["system"].url(service) + row.path.format(**world["values"])
    headers = headers_for(world, caller, row)
    if row.form is not None:
        return httpx.request(method, url, data=row.form, headers=headers, timeout=30)
    if row.body is None:
        return httpx.request(method, url, headers=headers, timeout=30)
    body = world["bodies"].get(row.body, row.body) if isinstance(row.body, str) else row.body
    return httpx.request(method, url, content=json.dumps(body), timeout=30,
                         headers={**headers, "Content-Type": "application/fhir+json"})


def test_every_route_answers_every_caller_as_the_table_says(world: dict[str, Any]) -> None:
    wrong: list[str] = []
    for service in ORDER:
        for (method, _path), row in TABLE[service].items():
            for caller in CALLERS:
                answer = call(world, service, method, row, caller)
                if answer.status_code != row.expect[caller]:
                    wrong.append(f"{service} {method} {row.path} as {caller}: {answer.status_code}, expected "
                                 f"{row.expect[caller]} ({answer.text[:120]})")
    assert not wrong, "\n".join(wrong)
