"""The referrer's closed loop: case.status keeps the FHIR Task current (status, businessStatus,
statusReason, output); a Subscription (rest-hook, id-only) gets its handshake, then numbered id-only
notifications and heartbeats at a real local endpoint; polling by _lastUpdated works too."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
from fastapi import FastAPI, Request, Response
from sqlmodel import select

from services.intake.app import SAMPLE_CLIENT, create_app
from services.intake.closed_loop import BACKPORT, TOPIC, FhirSubscription, parse_subscription
from services.intake.settings import IntakeSettings
from services.launcher import NatsServer
from shared.bus import Bus
from shared.events import CaseStatus, TaskStatus
from shared.fhir import FhirError
from tests.conftest import EXAMPLES
from tests.harness import eventually, running, service_auth
from tests.servers import serving

EHR = {"Authorization": f"Bearer {SAMPLE_CLIENT['api_key']}", "Content-Type": "application/fhir+json"}


class Endpoint:
    """The EHR's rest-hook endpoint: records each notification Bundle and the headers it came with."""

    def __init__(self) -> None:
        self.bundles: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/fhir-notify")
        async def receive(request: Request) -> Response:
            self.bundles.append(json.loads(await request.body()))
            self.headers.append(dict(request.headers))
            return Response(status_code=200)

        return app

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [b for b in self.bundles if status_param(b, "type") == kind]


def status_param(bundle: dict[str, Any], name: str) -> Any:
    params = bundle["entry"][0]["resource"]["parameter"]
    found = next(p for p in params if p["name"] == name)
    return next((v for k, v in found.items() if k.startswith("value")), found.get("part"))


def subscription(endpoint: str, heartbeat: int | None = None) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": f"{BACKPORT}/backport-payload-content", "valueCode": "id-only"}]},
        "header": ["Authorization: Bearer ehr-endpoint-token"],
    }
    if heartbeat:
        channel["extension"] = [{"url": f"{BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": heartbeat}]
    return {"resourceType": "Subscription", "status": "requested", "reason": "Follow our referrals",
            "criteria": TOPIC, "channel": channel}


@pytest.fixture
def retry_hours() -> str:
    """How long a failing endpoint is retried (INTAKE_SUBSCRIPTION_RETRY_HOURS); a test may override it."""
    return "24"


@pytest.fixture
async def intake(nats_server: NatsServer, database_url: str, encryption_keys: str, retry_hours: str,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator:
    monkeypatch.setenv("INTAKE_SUBSCRIPTION_POLL_SECONDS", "0.05")
    monkeypatch.setenv("INTAKE_SUBSCRIPTION_BACKOFF_BASE_SECONDS", "0.05")
    monkeypatch.setenv("INTAKE_SUBSCRIPTION_PUBLIC_URL", "https://pathways.example.org")
    monkeypatch.setenv("INTAKE_SUBSCRIPTION_RETRY_HOURS", retry_hours)
    app = create_app(IntakeSettings(
        nats_url=nats_server.url, database_url=database_url, **service_auth("intake"), environment="development",
        encryption_keys=encryption_keys, active_key_id="k1", seed_sample_client=True,
    ))
    async with running(app) as client:
        yield client


async def test_subscription_gets_handshake_then_numbered_id_only_notifications_as_the_task_moves(intake, nats_server):
    endpoint = Endpoint()
    async with serving(endpoint.app()) as server:
        created = await intake.post("/fhir/Subscription", json=subscription(f"{server.url}/fhir-notify", heartbeat=1),
                                    headers=EHR)
        assert created.status_code == 201, created.text
        sub = created.json()
        assert sub["status"] == "requested" and created.headers["Location"] == f"/fhir/Subscription/{sub['id']}"

        async def handshaken() -> bool:
            return bool(endpoint.of_type("handshake"))

        await eventually(handshaken)
        [handshake] = endpoint.of_type("handshake")
        assert handshake["type"] == "history"
        assert status_param(handshake, "events-since-subscription-start") == "0"
        assert status_param(handshake, "subscription")["reference"].endswith(f"/fhir/Subscription/{sub['id']}")
        assert endpoint.headers[0]["authorization"] == "Bearer ehr-endpoint-token"

        async def active() -> bool:
            response = await intake.get(f"/fhir/Subscription/{sub['id']}", headers=EHR)
            return response.json()["status"] == "active"

        await eventually(active)

        posted = await intake.post("/fhir/Bundle", content=(EXAMPLES / "gp-referral.json").read_bytes(), headers=EHR)
        task_id = UUID(posted.json()["id"])
        before = posted.json()["meta"]["lastUpdated"]

        probe = Bus(nats_server.url, name="probe")
        await probe.start()
        await probe.wait_ready(10)
        try:
            await probe.publish(CaseStatus(case_id=task_id, status=TaskStatus.accepted, business_status_code="accepted",
                                           business_status="accepted by Outreach (synthetic)"))

            async def accepted() -> bool:
                return (await intake.get(f"/fhir/Task/{task_id}", headers=EHR)).json()["status"] == "accepted"

            await eventually(accepted)
            await probe.publish(CaseStatus(case_id=task_id, status=TaskStatus.in_progress,
                                           business_status_code="contact-made", business_status="contact made",
                                           outputs=("contact-made",)))

            async def two_events() -> bool:
                return len(endpoint.of_type("event-notification")) == 2

            await eventually(two_events)
        finally:
            await probe.close()

        events = endpoint.of_type("event-notification")
        assert [status_param(b, "events-since-subscription-start") for b in events] == ["1", "2"]
        for number, bundle in enumerate(events, start=1):
            event = {p["name"]: p for p in status_param(bundle, "notification-event")}
            assert event["event-number"]["valueString"] == str(number)
            assert event["focus"]["valueReference"]["reference"] == f"https://pathways.example.org/fhir/Task/{task_id}"
            # id-only: the Task's address, never the Task itself (and nothing about the survivor).
            assert len(bundle["entry"]) == 2 and "resource" not in bundle["entry"][1]
            assert "Alex" not in json.dumps(bundle) and "LS7" not in json.dumps(bundle)

        task = (await intake.get(f"/fhir/Task/{task_id}", headers=EHR)).json()
        assert task["status"] == "in-progress"
        assert task["businessStatus"]["coding"][0]["code"] == "contact-made"
        assert task["businessStatus"]["text"] == "contact made"
        assert [o["valueCodeableConcept"]["coding"][0]["code"] for o in task["output"]] == ["contact-made"]

        # A heartbeat may already have gone out between the two events (a slow machine): what must hold
        # is that the count only ever rises and that a heartbeat after the second event says 2.
        async def heartbeat_after_both() -> bool:
            return any(status_param(b, "events-since-subscription-start") == "2"
                       for b in endpoint.of_type("heartbeat"))

        await eventually(heartbeat_after_both)
        counts = [int(status_param(b, "events-since-subscription-start")) for b in endpoint.of_type("heartbeat")]
        assert counts == sorted(counts) and set(counts) <= {0, 1, 2}

        # Polling works as well: changed since the referral was made, and nothing after the last change.
        changed = await intake.get("/fhir/Task", params={"_lastUpdated": f"gt{before}"}, headers=EHR)
        assert changed.status_code == 200 and changed.json()["type"] == "searchset"
        assert [e["resource"]["id"] for e in changed.json()["entry"]] == [str(task_id)]
        later = await intake.get("/fhir/Task", params={"_lastUpdated": f"gt{task['meta']['lastUpdated']}"}, headers=EHR)
        assert later.json()["entry"] == []

        off = await intake.delete(f"/fhir/Subscription/{sub['id']}", headers=EHR)
        assert off.json()["status"] == "off"


async def test_cancelled_task_carries_its_reason(intake, nats_server):
    posted = await intake.post("/fhir/Bundle", content=(EXAMPLES / "gp-referral.json").read_bytes(), headers=EHR)
    task_id = UUID(posted.json()["id"])
    probe = Bus(nats_server.url, name="probe")
    await probe.start()
    await probe.wait_ready(10)
    try:
        await probe.publish(CaseStatus(case_id=task_id, status=TaskStatus.cancelled, business_status_code="consent-withdrawn",
                                       business_status="consent withdrawn", status_reason="the survivor withdrew consent"))

        async def cancelled() -> bool:
            return (await intake.get(f"/fhir/Task/{task_id}", headers=EHR)).json()["status"] == "cancelled"

        await eventually(cancelled)
    finally:
        await probe.close()
    task = (await intake.get(f"/fhir/Task/{task_id}", headers=EHR)).json()
    assert task["statusReason"]["text"] == "the survivor withdrew consent"
    assert task["businessStatus"]["coding"][0]["code"] == "consent-withdrawn"


@pytest.mark.parametrize("retry_hours", ["0"])
async def test_a_subscription_whose_endpoint_keeps_failing_past_the_retry_period_goes_to_error(intake):
    failing = FastAPI()

    @failing.post("/fhir-notify")
    async def refuse() -> Response:
        return Response(status_code=503)

    async with serving(failing) as server:
        created = await intake.post("/fhir/Subscription", json=subscription(f"{server.url}/fhir-notify"), headers=EHR)
        assert created.status_code == 201, created.text
        sub_id = created.json()["id"]

        async def in_error() -> bool:
            response = await intake.get(f"/fhir/Subscription/{sub_id}", headers=EHR)
            return response.json()["status"] == "error"

        await eventually(in_error)
    sub = (await intake.get(f"/fhir/Subscription/{sub_id}", headers=EHR)).json()
    assert sub["error"] == "endpoint failing for 0 h (HTTP 503)"


def test_subscriptions_must_be_https_rest_hook_id_only_outside_development():
    good = subscription("https://ehr.example.org/fhir-notify")
    assert parse_subscription(good, development=False, min_heartbeat=1)["endpoint"] == "https://ehr.example.org/fhir-notify"
    for bad in (subscription("http://ehr.example.org/fhir-notify"),
                {**good, "criteria": "Task?status=completed"},
                {**good, "channel": {**good["channel"], "type": "websocket"}}):
        with pytest.raises(FhirError) as raised:
            parse_subscription(bad, development=False, min_heartbeat=1)
        assert raised.value.status == 422


async def test_a_subscription_endpoint_that_now_resolves_to_a_private_address_is_never_called(intake, monkeypatch):
    """DNS rebinding: public when the EHR registered it, inside the network at delivery: nothing is sent
    and the Subscription goes to error, saying why."""
    answers = iter([["93.184.216.34"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers, ["169.254.169.254"])

    monkeypatch.setattr("shared.egress.resolve", rebinding)
    created = await intake.post("/fhir/Subscription", json=subscription("https://ehr.example.org/fhir-notify"),
                                headers=EHR)
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]

    async def in_error() -> bool:
        return (await intake.get(f"/fhir/Subscription/{sub_id}", headers=EHR)).json()["status"] == "error"

    await eventually(in_error)
    sub = (await intake.get(f"/fhir/Subscription/{sub_id}", headers=EHR)).json()
    assert "link-local address" in sub["error"] and "169.254" not in sub["error"]


INSIDE_THE_NETWORK = ("https://127.0.0.1/fhir-notify", "https://10.0.0.1/fhir-notify",
                      "https://169.254.169.254/latest/meta-data", "https://[::1]/fhir-notify",
                      "https://[::ffff:127.0.0.1]/fhir-notify", "https://localhost/fhir-notify")


async def test_subscription_endpoints_inside_the_network_are_refused_at_registration(
        nats_server, database_url, encryption_keys):
    settings = IntakeSettings(nats_url=nats_server.url, database_url=database_url, **service_auth("intake"),
                              encryption_keys=encryption_keys, active_key_id="k1", seed_sample_client=True,
                              environment="production")
    app = create_app(settings)
    async with running(app) as intake:
        for endpoint in INSIDE_THE_NETWORK:
            refused = await intake.post("/fhir/Subscription", json=subscription(endpoint), headers=EHR)
            assert refused.status_code == 422, endpoint
            [issue] = refused.json()["issue"]
            assert issue["expression"] == ["Subscription.channel.endpoint"]
            assert "Pathways does not call" in issue["diagnostics"]
        async with app.state.runtime.db.session() as session:
            assert (await session.exec(select(FhirSubscription))).first() is None


async def test_subscription_headers_may_not_override_host_or_framing(intake):
    for header in ("Host: intake.internal", "Content-Length: 0", "X-Forwarded-For: 10.0.0.1", "X-A: b\r\nX-C: d"):
        body = subscription("https://ehr.example.org/fhir-notify")
        body["channel"]["header"] = [header]
        refused = await intake.post("/fhir/Subscription", json=body, headers=EHR)
        assert refused.status_code == 422, header
        assert refused.json()["issue"][0]["expression"] == ["Subscription.channel.header"]
