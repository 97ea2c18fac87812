"""No identifying data escapes (issue 13). NATS and the four services run as processes; two synthetic
survivors with made-up, distinctive details go through the whole journey (referral, routing, offer,
acceptance, handoff, outcome, consent withdrawal and purge; a high-risk case with no recourse to public
funds offered to an IDVA service and the MARAC), with refused requests and an outage on the way. Then
every log line of every process, every span the services exported (the raw OTLP requests, so names,
attributes, events and statuses alike), every message on every JetStream stream (headers included) and
every webhook a provider received is searched for each identifying value and each secret. The postcode
district and sector may appear; the full postcode may not.

The immigration firewall is checked on the same run: the MARAC's offer (as it polls it, as the offer
event and as its webhook) and its handoff never carry the survivor's immigration status, while the IDVA
service, which may match on it, sees it."""

from __future__ import annotations

import base64
import copy
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats.js.errors
import pytest

from services.launcher import SERVICES, NatsServer, System, free_port, load_or_create_secrets
from shared.bus import EVENTS_STREAM, Bus
from tests.conftest import EXAMPLES, PG_HOST, PG_PORT, PG_USER, POSTGRES_AVAILABLE
from tests.e2e.conftest import poll
from tests.servers import OtlpReceiver, ThreadedServer, WebhookReceiver

EHR_KEY = {"Authorization": "Bearer pw_sample_ehr_client"}
FHIR = {**EHR_KEY, "Content-Type": "application/fhir+json"}
PROVIDER_KEY = {"Authorization": "Bearer pw_sample_aire_valley_da"}
MARAC_KEY = {"Authorization": "Bearer pw_sample_leeds_marac"}
SAMPLE_KEYS = ("pw_sample_ehr_client", "pw_sample_aire_valley_da", "pw_sample_leeds_marac")
SIGNING_SECRET = "whsec_" + base64.b64encode(b"synthetic-leak-test-signing-key").decode()
NATS_PASSWORD = "Nats-Pa55word-Leak-Test-7781"
DATABASE_PASSWORD = "Db-Pa55word-Leak-Test-3307"
EXT = "https://pathways.example.org/fhir/StructureDefinition/"
SCOPE_SYSTEM = "https://pathways.example.org/fhir/CodeSystem/consent-scope"
IMMIGRATION = ("no-recourse-to-public-funds", "recourse to public funds", "nrpf", "immigration")


@dataclass(frozen=True)
class Survivor:
    """Made-up details, unlike anything else in the system, so that any appearance is a leak."""

    given: str
    family: str
    birth_date: str
    phone: str
    email: str
    nhs_number: str
    street: str
    postcode: str
    instruction: str
    note: str
    referral_id: str
    # The made-up words of the street, the instruction and the note.
    words: tuple[str, ...]

    def identifying(self) -> list[str]:
        """Each value as it was given and in the other forms it could be written in."""
        day = "/".join(reversed(self.birth_date.split("-")))
        outward, inward = self.postcode.split()
        return [self.given, self.family, self.birth_date, day, self.phone, self.phone.replace(" ", ""),
                "+44" + self.phone.replace(" ", "")[1:], self.email, self.email.split("@")[0], self.nhs_number,
                f"{self.nhs_number[:3]} {self.nhs_number[3:6]} {self.nhs_number[6:]}", self.postcode,
                outward + inward, f"{outward}%20{inward}", f"{outward}+{inward}", *self.words]


FIRST = Survivor(
    given="Zyxwvuta", family="Quillbrook", birth_date="1983-07-19", phone="07700 900417",
    email="zq.leakcheck@example.org", nhs_number="9434765919", street="17 Marrowgate Yard", postcode="LS7 9QJ",
    instruction="Ask for Ysolde at Thistlewick library; never call after 6pm.",
    note="Partner drives for Brammerton Haulage and checks her phone.", referral_id="LEAK-REF-0001",
    words=("Marrowgate", "Ysolde", "Thistlewick", "Brammerton"),
)
SECOND = Survivor(
    given="Wexhollow", family="Prindlebeck", birth_date="1979-11-03", phone="07700 900862",
    email="wp.leakcheck@example.org", nhs_number="9434765870", street="4 Cobblestrand Close", postcode="LS7 9WX",
    instruction="Speak only to Orlavine at the Fennimore clinic.",
    note="Visa tied to spouse; fears Quorlick relatives.", referral_id="LEAK-REF-0002",
    words=("Cobblestrand", "Orlavine", "Fennimore", "Quorlick"),
)


def referral(survivor: Survivor, *, high_risk: bool = False, nrpf: bool = False) -> dict[str, Any]:
    """The example GP referral, carrying ``survivor``'s details everywhere identifying data can go."""
    bundle = json.loads((EXAMPLES / "gp-referral.json").read_text())
    bundle["identifier"]["value"] = survivor.referral_id
    resources = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    patient, request = resources["Patient"], resources["ServiceRequest"]
    patient["name"] = [{"family": survivor.family, "given": [survivor.given],
                        "text": f"{survivor.given} {survivor.family}"}]
    patient["birthDate"] = survivor.birth_date
    patient["telecom"] = [{"system": "phone", "value": survivor.phone, "use": "mobile"},
                          {"system": "email", "value": survivor.email}]
    patient["address"] = [{"line": [survivor.street], "city": "Leeds", "postalCode": survivor.postcode}]
    patient["identifier"] = [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": survivor.nhs_number}]
    request["identifier"][0]["value"] = survivor.referral_id
    request["patientInstruction"] = survivor.instruction
    request["note"] = [{"text": survivor.note}]
    contact = next(e for e in request["extension"] if e["url"] == EXT + "safe-contact")
    next(e for e in contact["extension"] if e["url"] == "safe-number")["valueString"] = survivor.phone
    if nrpf:
        request["extension"].append({"url": EXT + "need", "valueCode": "no-recourse-to-public-funds"})
    if high_risk:
        resources["RiskAssessment"]["extension"][0]["valueInteger"] = 16
        resources["Consent"]["provision"]["actor"] += [
            {"role": {"coding": [{"system": SCOPE_SYSTEM, "code": code}]}, "reference": {"display": code}}
            for code in ("idva", "marac")]
    return bundle


@dataclass
class Run:
    system: System
    logs: str = ""
    spans: bytes = b""
    stream_messages: list[tuple[str, bytes]] = field(default_factory=list)
    webhooks: str = ""
    secrets: dict[str, str] = field(default_factory=dict)
    # What the providers were shown, for the checks that the values were really in the system.
    handoff: dict[str, Any] = field(default_factory=dict)
    marac_offer: dict[str, Any] = field(default_factory=dict)
    marac_handoff: dict[str, Any] = field(default_factory=dict)
    idva_offer: dict[str, Any] = field(default_factory=dict)
    marac_webhooks: list[dict[str, Any]] = field(default_factory=list)
    refusals: dict[str, httpx.Response] = field(default_factory=dict)


def set_webhook(directory: str, ops: dict[str, str], organisation: str, url: str) -> None:
    org = httpx.get(f"{directory}/organisations/{organisation}", headers=ops).json()
    body = {"name": org["name"], "by_and_for": org.get("by_and_for", []), "contact_name": org.get("contact_name"),
            "delivery": "webhook", "webhook_url": url, "signing_secrets": [SIGNING_SECRET]}
    answer = httpx.put(f"{directory}/organisations/{organisation}", json=body, headers=ops)
    assert answer.status_code == 200, answer.text


def offers_for(notify: str, key: dict[str, str], case_id: str) -> list[dict[str, Any]]:
    return [o for o in httpx.get(f"{notify}/offers", headers=key).json() if o["case_id"] == case_id]


def first_journey(run: Run, intake: str, notify: str, directory: str) -> None:
    """Referral → offer → acceptance (with an outage at the handoff) → handoff → outcome → withdrawal."""
    posted = httpx.post(f"{intake}/fhir/Bundle", json=referral(FIRST), headers=FHIR)
    assert posted.status_code == 202, posted.text
    case_id = posted.json()["id"]
    [offer] = poll(lambda: offers_for(notify, PROVIDER_KEY, case_id), lambda found: len(found) == 1, timeout=60)
    assert httpx.post(f"{notify}/offers/{offer['id']}/accept", headers=PROVIDER_KEY).status_code == 200

    # An error path: intake is down when the provider asks for the handoff; notify fails the request
    # (and logs it) without quoting the case's data. Then intake is back and the handoff is released.
    run.system.stop_service("intake")
    failed = httpx.get(f"{notify}/offers/{offer['id']}/handoff", headers=PROVIDER_KEY, timeout=30)
    run.refusals["handoff-while-intake-down"] = failed
    run.system.start_service("intake")
    poll(lambda: _ready(intake), bool, timeout=60)
    handoff = httpx.get(f"{notify}/offers/{offer['id']}/handoff", headers=PROVIDER_KEY)
    assert handoff.status_code == 200, handoff.text
    run.handoff = handoff.json()

    assert httpx.post(f"{notify}/offers/{offer['id']}/outcomes", json={"outcome": "contact-made"},
                      headers=PROVIDER_KEY).status_code == 200
    consent = next(e["resource"] for e in referral(FIRST)["entry"] if e["resource"]["resourceType"] == "Consent")
    consent = copy.deepcopy(consent) | {"status": "inactive", "id": case_id}
    withdrawn = httpx.put(f"{intake}/fhir/Consent/{case_id}", json=consent, headers=FHIR)
    assert withdrawn.status_code == 200, withdrawn.text
    poll(lambda: httpx.get(f"{notify}/offers/{offer['id']}", headers=PROVIDER_KEY).json(),
         lambda o: o["stop_contact"], timeout=60)
    poll(lambda: httpx.get(f"{notify}/offers/{offer['id']}/handoff", headers=PROVIDER_KEY).status_code,
         lambda code: code == 410, timeout=60)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def refused_requests(run: Run, intake: str, notify: str, directory: str) -> None:
    """Requests the services refuse, each carrying identifying values: they may be answered, not logged."""
    invalid = referral(FIRST)
    patient = next(e["resource"] for e in invalid["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["gender"] = f"{FIRST.given}-{FIRST.phone}"  # not a FHIR code: the parser quotes what it got
    patient["birthDate"] = f"{FIRST.birth_date} {FIRST.family}"
    run.refusals["fhir-invalid"] = httpx.post(f"{intake}/fhir/Bundle", json=invalid, headers=FHIR)
    no_postcode = referral(FIRST)
    no_postcode["identifier"]["value"] = "LEAK-REF-NO-POSTCODE"
    patient = next(e["resource"] for e in no_postcode["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["address"][0]["postalCode"] = f"{FIRST.postcode} {FIRST.street}"
    run.refusals["fhir-business-rule"] = httpx.post(f"{intake}/fhir/Bundle", json=no_postcode, headers=FHIR)
    truncated = json.dumps(referral(FIRST))[:1500].encode()
    run.refusals["fhir-not-json"] = httpx.post(f"{intake}/fhir/Bundle", content=truncated, headers=FHIR)
    run.refusals["fhir-other-ods"] = httpx.post(
        f"{intake}/fhir/Bundle", headers=FHIR,
        json=_with_requester(referral(FIRST), "Z99999"))
    run.refusals["outcome-422"] = httpx.post(
        f"{notify}/offers/00000000-0000-0000-0000-000000000000/outcomes", headers=PROVIDER_KEY,
        json={"outcome": f"{FIRST.given} {FIRST.family} {FIRST.phone}"})
    run.refusals["area-full-postcode"] = httpx.get(f"{directory}/areas/{FIRST.postcode}")
    run.refusals["search-by-postcode"] = httpx.get(f"{directory}/services", params={"postcode": FIRST.postcode,
                                                                                  "q": FIRST.family})
    # An EHR looking a patient up (Pathways has no Patient endpoint) and one using an NHS number as its
    # request id: raw paths, queries and headers may not reach a log line or a span either.
    run.refusals["patient-search"] = httpx.get(
        f"{intake}/fhir/Patient", headers=EHR_KEY,
        params={"family": FIRST.family, "birthdate": FIRST.birth_date, "address-postalcode": FIRST.postcode})
    run.refusals["patient-read"] = httpx.get(f"{intake}/fhir/Patient/{FIRST.nhs_number}", headers=EHR_KEY)
    run.refusals["request-id"] = httpx.post(f"{intake}/fhir/Bundle", json=invalid,
                                            headers={**FHIR, "X-Request-ID": f"{FIRST.nhs_number}-{FIRST.family}"})
    run.refusals["bad-key"] = httpx.get(f"{notify}/offers", headers={"Authorization": f"Bearer {FIRST.email}"})


def _with_requester(bundle: dict[str, Any], ods: str) -> dict[str, Any]:
    request = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    request["requester"]["identifier"]["value"] = ods
    bundle["identifier"]["value"] = "LEAK-REF-OTHER-ODS"
    return bundle


def firewall_journey(run: Run, intake: str, notify: str, webhooks: WebhookReceiver) -> None:
    """High risk, no recourse to public funds: an IDVA service and the MARAC are offered the case."""
    posted = httpx.post(f"{intake}/fhir/Bundle", json=referral(SECOND, high_risk=True, nrpf=True), headers=FHIR)
    assert posted.status_code == 202, posted.text
    case_id = posted.json()["id"]
    [marac] = poll(lambda: offers_for(notify, MARAC_KEY, case_id), lambda found: len(found) == 1, timeout=60)
    [idva] = poll(lambda: offers_for(notify, PROVIDER_KEY, case_id), lambda found: len(found) == 1, timeout=60)
    run.marac_offer, run.idva_offer = marac, idva
    assert httpx.post(f"{notify}/offers/{marac['id']}/accept", headers=MARAC_KEY).status_code == 200
    handoff = httpx.get(f"{notify}/offers/{marac['id']}/handoff", headers=MARAC_KEY)
    assert handoff.status_code == 200, handoff.text
    run.marac_handoff = handoff.json()
    poll(lambda: [r for r in webhooks.received if r["payload"].get("data", {}).get("offer_id") == marac["id"]],
         lambda found: len(found) >= 1, timeout=60)
    run.marac_webhooks = [r for r in webhooks.received if marac["id"] in r["raw"].decode()]


async def every_stream_message(url: str) -> list[tuple[str, bytes]]:
    """Every message still held on every stream (the events, the dead letters, and any other)."""
    bus = Bus(url, name="leak-test")
    await bus.connect_once()
    found: list[tuple[str, bytes]] = []
    try:
        js = bus.js
        for info in await js.streams_info():
            state = info.state
            if not state.messages:
                continue
            for seq in range(state.first_seq, state.last_seq + 1):
                try:
                    msg = await js.get_msg(info.config.name, seq)
                except nats.js.errors.NotFoundError:  # deleted (an interior gap)
                    continue
                headers = json.dumps(msg.headers or {}).encode()
                found.append((f"{info.config.name}/{msg.subject}", (msg.data or b"") + b"\n" + headers))
    finally:
        await bus.close()
    return found


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The services' own SQLite files, or one PostgreSQL database for all four (its errors quote values
    differently: ``DETAIL: Key (x)=(value)``), reached with a password that must not show either."""
    import asyncio

    if request.param == "sqlite":
        yield None
        return
    if not POSTGRES_AVAILABLE:
        pytest.skip(f"no PostgreSQL at {PG_HOST}:{PG_PORT}")
    name = f"pathways_leak_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield f"postgresql+asyncpg://{PG_USER}:{DATABASE_PASSWORD}@{PG_HOST}:{PG_PORT}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, database_url: str | None) -> Iterator[Run]:
    import asyncio

    data_dir = tmp_path_factory.mktemp("leak") / ".data"
    traces, webhooks = OtlpReceiver(), WebhookReceiver(SIGNING_SECRET)
    nats = NatsServer(data_dir.parent / "nats", log_file=data_dir.parent / "nats.log")
    nats.start()
    try:
        with ThreadedServer(traces.app()) as collector, ThreadedServer(webhooks.app()) as hooks:
            ports = {name: free_port() for name in (*SERVICES, "nats", "nats_monitor")}
            system = System(
                data_dir=data_dir, ports=ports,
                # With credentials, as production connects: the password must not show anywhere either.
                nats_url=nats.url.replace("nats://", f"nats://pathways:{NATS_PASSWORD}@"), database_url=database_url,
                extra_env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
                           "INTAKE_WITHDRAWAL_PURGE_HOURS": "0", "INTAKE_PURGE_CHECK_SECONDS": "1"},
            )
            system.start(timeout=90)
            result = Run(system)
            try:
                # Every secret the system was started with (tokens, credentials, keys), whatever their names.
                result.secrets = {k: v for k, v in load_or_create_secrets(data_dir / "secrets.env").items()
                                  if len(v) >= 12 and k != "INTAKE_ACTIVE_KEY_ID"}
                result.secrets.update({f"{k}/{i}": part for k, v in list(result.secrets.items())
                                       for i, part in enumerate(re.split(r"[,:]", v)) if len(part) >= 16})
                # A SHA-256 digest of a key is what the services store; it is not the secret.
                result.secrets = {k: v for k, v in result.secrets.items() if not re.fullmatch(r"[0-9a-f]{64}", v)}
                result.secrets["NATS_PASSWORD"] = NATS_PASSWORD
                if database_url:
                    result.secrets["DATABASE_PASSWORD"] = DATABASE_PASSWORD
                intake, notify, directory = (system.url(s) for s in ("intake", "notify", "directory"))
                ops = {"Authorization": f"Bearer {system.environment()['PATHWAYS_OPS_KEY']}"}
                for organisation in ("aire-valley-da", "leeds-marac"):
                    set_webhook(directory, ops, organisation, f"{hooks.url}/hooks")
                refused_requests(result, intake, notify, directory)
                first_journey(result, intake, notify, directory)
                firewall_journey(result, intake, notify, webhooks)
            finally:
                system.stop()  # the services flush their last spans as they stop
            result.stream_messages = asyncio.run(every_stream_message(nats.url))
            poll(lambda: len(traces.raw), lambda n: n > 0)
            result.spans = b"".join(traces.raw)
            result.webhooks = "\n".join(r["raw"].decode() for r in webhooks.received)
            result.logs = "\n".join(p.read_text(errors="replace") for p in sorted(system.log_dir.glob("*.log")))
            result.logs += "\n" + (data_dir.parent / "nats.log").read_text(errors="replace")
            yield result
    finally:
        nats.stop()


def needles() -> list[str]:
    return [value for survivor in (FIRST, SECOND) for value in survivor.identifying()]


def leaks(haystack: str, values: list[str]) -> list[str]:
    lowered = haystack.lower()
    return [value for value in values if value.lower() in lowered]


def test_the_identifying_values_really_went_through_the_system(run: Run) -> None:
    """Without this the searches below could pass by never having seen the data."""
    survivor = json.dumps(run.handoff["survivor"])
    assert FIRST.given in survivor and FIRST.postcode in survivor and FIRST.birth_date in survivor
    assert FIRST.note in survivor
    assert SECOND.family in json.dumps(run.marac_handoff["survivor"])
    assert run.logs.count("\n") > 50 and len(run.spans) > 10_000 and len(run.stream_messages) > 10
    assert any(name.startswith(f"{EVENTS_STREAM}/referral.received") for name, _ in run.stream_messages)
    assert "offer.made" in run.webhooks
    # Each refused request was refused (and answered helpfully, which may quote the caller's own input).
    codes = {name: response.status_code for name, response in run.refusals.items()}
    assert codes["fhir-invalid"] in (400, 422) and codes["fhir-business-rule"] == 422
    assert codes["fhir-not-json"] == 400 and codes["fhir-other-ods"] == 403
    assert codes["outcome-422"] == 422 and codes["bad-key"] == 401
    assert codes["handoff-while-intake-down"] >= 500
    assert codes["patient-search"] in (404, 405) and codes["patient-read"] in (404, 405)
    assert codes["request-id"] in (400, 422)


def test_no_log_line_holds_identifying_data_or_a_secret(run: Run) -> None:
    assert not leaks(run.logs, needles())
    assert not leaks(run.logs, [*run.secrets.values(), *SAMPLE_KEYS])
    # The sector is not identifying and the logs may say it; they said something about every request.
    assert "POST /fhir/Bundle" in run.logs and "/areas/{area}" in run.logs


def test_no_span_holds_identifying_data_or_a_secret(run: Run) -> None:
    spans = run.spans.decode("utf-8", errors="replace")  # protobuf strings are UTF-8 as they are
    assert not leaks(spans, needles())
    assert not leaks(spans, [*run.secrets.values(), *SAMPLE_KEYS])


def test_no_stream_message_holds_identifying_data(run: Run) -> None:
    for name, message in run.stream_messages:
        text = message.decode("utf-8", errors="replace")
        assert not leaks(text, needles()), name
        assert not leaks(text, [*run.secrets.values(), *SAMPLE_KEYS]), name
    # What routing needs does travel: the sector, never the full postcode.
    received = next(m for name, m in run.stream_messages if name.endswith("referral.received"))
    assert b'"postcode_sector":"LS7 9"' in received


def test_no_webhook_holds_identifying_data(run: Run) -> None:
    assert not leaks(run.webhooks, needles())


def test_the_marac_never_learns_the_survivor_s_immigration_status(run: Run) -> None:
    marac, idva = run.marac_offer, run.idva_offer
    assert marac["service_type"] == "marac" and idva["service_type"] in ("idva", "health-idva")
    # The IDVA service may match on it (the router used it); the MARAC's offer does not carry it.
    assert "no-recourse-to-public-funds" in idva["summary"]["needs"]
    assert not leaks(json.dumps(marac), list(IMMIGRATION))
    assert run.marac_webhooks and not leaks(json.dumps([r["payload"] for r in run.marac_webhooks]), list(IMMIGRATION))
    handoff = copy.deepcopy(run.marac_handoff)
    # The referrer's free-text note is the survivor's own words, handed off as written; no field of the
    # handoff states immigration status.
    handoff["survivor"].pop("notes", None)
    assert not leaks(json.dumps(handoff), list(IMMIGRATION))
    # The events about the MARAC's offer carry no summary at all.
    for name, message in run.stream_messages:
        if "case.offer" in name and marac["id"].encode() in message:
            assert not leaks(message.decode(), list(IMMIGRATION)), name


def test_a_service_that_cannot_start_says_why_without_quoting_its_settings(tmp_path) -> None:
    """A bad setting stops a service at start-up: the reason is logged as a JSON line, through the
    scrubber, never as Python's raw traceback (which quotes the value, and a value can be a secret)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTAKE_", "PATHWAYS_", "NATS_", "DATABASE_"))}
    env.update(PATHWAYS_DATA_DIR=str(tmp_path), INTAKE_PORT=str(free_port()), PATHWAYS_ENV="development",
               PATHWAYS_SERVICE_CREDENTIAL="Startup-Token-8842", NATS_URL=f"nats://pathways:{NATS_PASSWORD}@127.0.0.1:1",
               INTAKE_DASH_AREA_THRESHOLDS=json.dumps({"LS": [12, f"{FIRST.given} {FIRST.family}"]}))
    stopped = subprocess.run([sys.executable, "-m", "services.intake"], env=env, capture_output=True, text=True,
                             timeout=60, check=False)
    assert stopped.returncode != 0
    output = stopped.stdout + stopped.stderr
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert lines[-1]["level"] == "CRITICAL" and "ValidationError" in lines[-1]["exc_info"]
    assert "dash_area_thresholds" in lines[-1]["exc_info"]  # what is wrong, still said
    assert not leaks(output, [FIRST.given, FIRST.family, NATS_PASSWORD, "Startup-Token-8842"])
