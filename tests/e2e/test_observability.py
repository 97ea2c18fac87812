"""What ops see of a running system: one trace per referral across HTTP and NATS, Prometheus metrics
without identifying labels, and ``pathways status``. NATS and the four services run as processes;
their spans reach a small OTLP/HTTP receiver in this test over the standard exporter variables."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.launcher import SERVICES, System, free_port
from tests.conftest import EXAMPLES
from tests.e2e.conftest import poll
from tests.servers import OtlpReceiver, ReceivedSpan, ThreadedServer, WebhookReceiver

EHR_KEY = {"Authorization": "Bearer pw_sample_ehr_client"}
PROVIDER_KEY = {"Authorization": "Bearer pw_sample_aire_valley_da"}
PROVIDER = "aire-valley-da"
SIGNING_SECRET = "whsec_" + base64.b64encode(b"synthetic-test-signing-key-24b").decode()
UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.IGNORECASE)
FULL_POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b", re.IGNORECASE)


@dataclass
class Observed:
    system: System
    traces: OtlpReceiver
    webhooks: WebhookReceiver
    task_id: str
    offer_id: str


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    traces, webhooks = OtlpReceiver(), WebhookReceiver(SIGNING_SECRET)
    with ThreadedServer(traces.app()) as collector, ThreadedServer(webhooks.app()) as hooks:
        ports = {name: free_port() for name in (*SERVICES, "nats", "nats_monitor")}
        system = System(
            data_dir=tmp_path_factory.mktemp("observe") / ".data", ports=ports,
            extra_env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"},
        )
        system.start(timeout=90)
        try:
            ops = {"Authorization": f"Bearer {system.environment()['PATHWAYS_OPS_KEY']}"}
            directory = system.url("directory")
            org = httpx.get(f"{directory}/organisations/{PROVIDER}").json()
            body = {k: org[k] for k in ("name", "by_and_for", "contact_name")} | {
                "delivery": "webhook", "webhook_url": f"{hooks.url}/hooks", "signing_secrets": [SIGNING_SECRET]}
            assert httpx.put(f"{directory}/organisations/{PROVIDER}", json=body, headers=ops).status_code == 200

            posted = httpx.post(f"{system.url('intake')}/fhir/Bundle", content=(EXAMPLES / "gp-referral.json").read_bytes(),
                                headers={**EHR_KEY, "Content-Type": "application/fhir+json"})
            assert posted.status_code == 202, posted.text
            task_id = posted.json()["id"]
            poll(webhooks.types, lambda types: "offer.made" in types, timeout=60)
            [offer] = httpx.get(f"{system.url('notify')}/offers", headers=PROVIDER_KEY).json()
            accepted = httpx.post(f"{system.url('notify')}/offers/{offer['id']}/accept", headers=PROVIDER_KEY)
            assert accepted.status_code == 200
            poll(lambda: httpx.get(f"{system.url('intake')}/fhir/Task/{task_id}", headers=EHR_KEY).json(),
                 lambda task: task["status"] == "accepted", timeout=60)
            # A lookup whose raw path holds a full postcode: it must not reach a label or a span.
            assert httpx.get(f"{directory}/areas/LS7 9ZZ").status_code in (200, 404)
            yield Observed(system, traces, webhooks, task_id, offer["id"])
        finally:
            system.stop()


def chain_to_root(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan] | None:
    """The span, its parent, its parent's parent… up to the root; ``None`` while a link is missing."""
    chain = [span]
    while chain[-1].parent_id is not None:
        parent = by_id.get(chain[-1].parent_id)
        if parent is None:
            return None
        chain.append(parent)
    return chain


def test_one_trace_runs_from_the_ehr_request_through_router_and_notify_to_the_webhook(observed: Observed):
    def delivery_chain() -> list[ReceivedSpan] | None:
        spans = observed.traces.snapshot()
        by_id = {s.span_id: s for s in spans}
        chains = (chain_to_root(s, by_id) for s in spans if s.name == "deliver webhook")
        return next((chain for chain in chains if chain is not None), None)

    chain = poll(delivery_chain, lambda found: found is not None, timeout=30)
    root = chain[-1]
    assert (root.service, root.name, root.kind) == ("pathways-intake", "POST /fhir/Bundle", "SPAN_KIND_SERVER")
    assert len({s.trace_id for s in chain}) == 1
    path = [(s.service.removeprefix("pathways-"), s.name) for s in reversed(chain)]
    names = [name for _service, name in path]
    for step in ("POST /fhir/Bundle", "publish referral.received", "consume referral.received",
                 "publish case.routed", "consume case.routed", "offer", "deliver webhook"):
        assert step in names, path
    # Each hop is a child of the one before: the order of the chain is the order of the journey.
    assert names.index("publish referral.received") < names.index("consume referral.received") \
        < names.index("publish case.routed") < names.index("consume case.routed") \
        < names.index("offer") < names.index("deliver webhook")
    services = [service for service, _name in path]
    assert [s for i, s in enumerate(services) if i == 0 or services[i - 1] != s] == ["intake", "router", "notify"]
    consume_routed = chain[[s.name for s in chain].index("consume case.routed")]
    assert consume_routed.kind == "SPAN_KIND_CONSUMER"
    assert consume_routed.attributes["messaging.destination.name"] == "case.routed"

    # The postcode lookup was the last request: once its span is in, every span before it is too.
    spans = poll(observed.traces.snapshot, lambda found: any(s.name == "GET /areas/{area}" for s in found))
    trace = [s for s in spans if s.trace_id == root.trace_id]
    delivery = chain[0]
    # The router's matching ran inside the consumer that published case.routed.
    consume_received = chain[[s.name for s in chain].index("consume referral.received")]
    assert any(s.name == "match" and s.parent_id == consume_received.span_id for s in trace)
    # The webhook's HTTP call itself is a child of the delivery span.
    assert any(s.parent_id == delivery.span_id and s.kind == "SPAN_KIND_CLIENT" for s in trace)
    # Nothing identifying in any span, and raw paths were never recorded.
    recorded = json.dumps([s.attributes for s in spans]) + json.dumps([s.name for s in spans])
    assert not FULL_POSTCODE.search(recorded) and "Example" not in recorded
    assert not {key for s in spans for key in s.attributes} & {"http.target", "http.url", "url.full", "url.path"}


EXPECTED_FAMILIES = {
    "intake": {"pathways_referrals_received", "pathways_referrals_rejected", "pathways_referral_to_acceptance_seconds"},
    "router": {"pathways_cases_routed"},
    "directory": set(),
    "notify": {"pathways_offers", "pathways_webhook_deliveries", "pathways_webhook_failures"},
}
EVERY_SERVICE = {"pathways_http_request_duration_seconds", "pathways_outbox_depth", "pathways_consumer_pending",
                 "pathways_consumer_ack_pending", "pathways_consumer_redelivered", "pathways_dead_letter_depth"}


def scrape(system: System, service: str) -> dict[str, list]:
    response = httpx.get(f"{system.url(service)}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def test_each_service_exports_its_metrics_and_no_label_identifies_anyone(observed: Observed):
    system = observed.system
    scraped = {service: scrape(system, service) for service in SERVICES}
    for service, families in scraped.items():
        missing = (EXPECTED_FAMILIES[service] | EVERY_SERVICE) - set(families)
        assert not missing, f"{service} lacks {missing}"
        for samples in families.values():
            for sample in samples:
                for label, value in sample.labels.items():
                    assert not UUID.search(value), f"{service}: {sample.name}{{{label}={value!r}}}"
                    assert not FULL_POSTCODE.search(value), f"{service}: {sample.name}{{{label}={value!r}}}"
                    assert observed.task_id not in value and observed.offer_id not in value

    def value(of: str, name: str, **labels: str) -> float:
        return sum(s.value for s in scraped[of][name.removesuffix("_total").removesuffix("_count")]
                   if s.name == name and labels.items() <= s.labels.items())

    assert value("intake", "pathways_referrals_received_total", risk_band="standard") >= 1
    assert value("intake", "pathways_referral_to_acceptance_seconds_count") >= 1
    assert value("router", "pathways_cases_routed_total", outcome="routed") >= 1
    assert value("notify", "pathways_offers", state="accepted") >= 1
    assert value("notify", "pathways_webhook_deliveries_total") >= 1
    assert value("notify", "pathways_outbox_depth", service="notify") == 0
    assert value("router", "pathways_consumer_pending", consumer="router-referrals") == 0
    assert value("notify", "pathways_dead_letter_depth") == 0
    # Latency by route template: the accept call and the postcode lookup, never their raw paths.
    assert value("notify", "pathways_http_request_duration_seconds_count", route="/offers/{offer_id}/accept") >= 1
    assert value("directory", "pathways_http_request_duration_seconds_count", route="/areas/{area}") >= 1

    rejected = httpx.post(f"{system.url('intake')}/fhir/Bundle", content=b"{not json",
                          headers={**EHR_KEY, "Content-Type": "application/fhir+json"})
    assert rejected.status_code == 400
    after = scrape(system, "intake")["pathways_referrals_rejected"]
    assert any(s.labels == {"reason": "structure"} and s.value >= 1 for s in after)


def test_every_log_line_is_one_json_object_naming_its_service(observed: Observed):
    for service in SERVICES:
        lines = (observed.system.log_dir / f"{service}.log").read_text().splitlines()
        assert lines, service
        for line in lines:
            entry = json.loads(line)
            assert entry["service"] == service and {"time", "level", "logger", "message"} <= set(entry)
            assert "9ZZ" not in line and "color_message" not in entry
    # Requests are logged by route template, inside their trace.
    directory = [json.loads(line) for line in (observed.system.log_dir / "directory.log").read_text().splitlines()]
    lookup = next(e for e in directory if e.get("http_route") == "/areas/{area}")
    assert lookup["logger"] == "pathways.access" and lookup["message"].startswith("GET /areas/{area} ")
    assert len(lookup["trace_id"]) == 32


def pathways(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env.update({f"{name.upper()}_PORT": str(port) for name, port in system.ports.items()},
               NATS_URL=system.nats.url if system.nats else "", COLUMNS="160")
    return subprocess.run([str(Path(sys.executable).parent / "pathways"), *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_pathways_status_shows_readiness_lag_dead_letters_and_outboxes(observed: Observed):
    system = observed.system
    answer = pathways(system, "status", "--json")
    assert answer.returncode == 0, answer.stderr
    status = json.loads(answer.stdout)
    assert status["healthy"] is True
    assert [(s["name"], s["ready"], s["outbox_depth"]) for s in status["services"]] == [
        (name, True, 0) for name in SERVICES]
    nats = status["nats"]
    assert nats["reachable"] and nats["dead_letters"] == 0 and nats["stream_messages"] >= 4
    consumers = {c["consumer"]: c for c in nats["consumers"]}
    assert {"router-referrals", "notify-case-routed", "intake-case-status"} <= set(consumers)
    assert consumers["notify-case-routed"] == {"consumer": "notify-case-routed", "pending": 0, "ack_pending": 0,
                                               "redelivered": 0}

    table = pathways(system, "status")
    assert table.returncode == 0, table.stderr
    for text in ("intake", "router", "directory", "notify", "ready", "no dead letters", "router-referrals",
                 "outbox depth", "pending"):
        assert text in table.stdout, table.stdout

    # A service that is down shows as down, and scripts learn it from the exit code.
    system.stop_service("directory")
    down = pathways(system, "status", "--json")
    assert down.returncode == 1
    directory = next(s for s in json.loads(down.stdout)["services"] if s["name"] == "directory")
    assert directory["ready"] is False and directory["state"].startswith("down")

