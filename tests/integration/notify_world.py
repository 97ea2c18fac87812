"""A small world for notify's integration tests: real NATS, a real database, the real intake (over real
HTTP, for the handoff read), a stub directory on a real local port, and a probe on the bus that plays
the router."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
from fastapi import FastAPI
from sqlmodel import select

from services.intake.app import SAMPLE_CLIENT
from services.intake.app import create_app as create_intake
from services.intake.referrals import current_consent
from services.intake.settings import IntakeSettings
from services.intake.store import AcceptedOffer, Referral
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from services.notify.store import Offer
from shared.bus import EVENTS_STREAM, Bus
from shared.events import (
    CareSetting,
    CaseRouted,
    CaseSummary,
    ConsentScope,
    ConsentState,
    ConsentStatus,
    Event,
    RiskBand,
    RoutedService,
    decode_event,
    utcnow,
)
from tests.conftest import EXAMPLES
from tests.harness import SERVICE_CREDENTIALS, eventually, running, service_auth
from tests.servers import LocalServer, StubDirectory

EHR = {"Authorization": f"Bearer {SAMPLE_CLIENT['api_key']}", "Content-Type": "application/fhir+json"}
OPS_KEY = "pw_ops_test_key"
OPS = {"Authorization": f"Bearer {OPS_KEY}"}


def provider(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


SERVICES = {
    "outreach": RoutedService(service_id="svc-outreach", organisation_id="org-outreach", service_type="community-outreach",
                              name="Outreach (synthetic)", reasons=("serves Leeds (E08000035)",)),
    "idva": RoutedService(service_id="svc-idva", organisation_id="org-idva", service_type="idva",
                          name="IDVA (synthetic)", reasons=("high risk: IDVA",)),
    "marac": RoutedService(service_id="svc-marac", organisation_id="org-marac", service_type="marac",
                           name="Leeds MARAC (synthetic)", reasons=("high risk: MARAC",)),
    "hooked": RoutedService(service_id="svc-hooked", organisation_id="org-hooked", service_type="community-outreach",
                            name="Webhook provider (synthetic)", reasons=("serves Leeds (E08000035)",)),
}
KEYS = {f"key-{name}": service.organisation_id for name, service in SERVICES.items()}

SUMMARY = CaseSummary(postcode_district="LS7", area_codes=("E08000035",), risk_band=RiskBand.high,
                      setting=CareSetting.gp, needs=("housing",))
GRANTED = ConsentState(status=ConsentStatus.granted, scopes=(ConsentScope.specialist_da, ConsentScope.idva))
CONSENT_SCOPE_SYSTEM = "https://pathways.example.org/fhir/CodeSystem/consent-scope"


def fhir_consent(*, status: str = "active", scopes: tuple[ConsentScope, ...] | None = None,
                 example: str = "gp-referral.json") -> dict[str, Any]:
    """The example's FHIR Consent as an EHR sends an update: another status, or other scopes."""
    bundle = json.loads((EXAMPLES / example).read_text())
    consent = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Consent")
    if scopes is not None:
        consent["provision"]["actor"] = [
            {"role": {"coding": [{"system": CONSENT_SCOPE_SYSTEM, "code": scope.value}]},
             "reference": {"display": scope.value}} for scope in scopes
        ]
    return {**consent, "status": status}


def withdrawal() -> dict[str, Any]:
    """The survivor withdrew consent (FHIR Consent status inactive)."""
    return fhir_consent(status="inactive")


@dataclass
class World:
    nats_url: str
    database_url: str
    tmp_path: Path
    directory: StubDirectory
    directory_server: LocalServer
    intake_server: LocalServer
    intake: FastAPI
    probe: Bus
    notify_overrides: dict[str, Any] = field(default_factory=dict)

    def notify_settings(self, **overrides: Any) -> NotifySettings:
        values: dict[str, Any] = dict(
            nats_url=self.nats_url, database_url=self.database_url, **service_auth("notify"),
            directory_url=self.directory_server.url, intake_url=self.intake_server.url,
            environment="development",
            webhook_backoff_base_seconds=0.05, webhook_backoff_cap_seconds=0.2, webhook_poll_seconds=0.05,
            sla_check_seconds=0.05, delivery_cache_seconds=0.0, provider_key_cache_seconds=0.0,
        )
        values.update(self.notify_overrides)
        values.update(overrides)
        return NotifySettings(**values)

    @asynccontextmanager
    async def notify(self, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_notify(self.notify_settings(**overrides))
        async with running(app) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client

    async def refer(self, *, identifier: str, example: str = "gp-referral.json",
                    scopes: tuple[ConsentScope, ...] | None = None) -> UUID:
        """A referral through the real intake: the case exists there, with its encrypted details and the
        consent intake holds (``scopes`` replaces the example's consent scopes)."""
        bundle = json.loads((EXAMPLES / example).read_text())
        bundle["identifier"]["value"] = identifier
        if scopes is not None:
            entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Consent")
            entry["resource"] = fhir_consent(scopes=scopes, example=example)
        async with httpx.AsyncClient(base_url=self.intake_server.url) as client:
            response = await client.post("/fhir/Bundle", json=bundle, headers=EHR)
        assert response.status_code == 202, response.text
        return UUID(response.json()["id"])

    async def consent_in_intake(self, case_id: UUID) -> ConsentState:
        async with self.intake.state.runtime.db.session() as session:
            referral = await session.get(Referral, case_id)
            assert referral is not None
            return current_consent(referral)

    async def update_consent(self, case_id: UUID, consent: dict[str, Any]) -> httpx.Response:
        """The EHR updates the survivor's consent at intake (FHIR PUT Consent)."""
        async with httpx.AsyncClient(base_url=self.intake_server.url) as client:
            return await client.put(f"/fhir/Consent/{case_id}", json=consent, headers=EHR)

    async def task(self, case_id: UUID) -> dict[str, Any]:
        """The referral's FHIR Task as the EHR reads it."""
        async with httpx.AsyncClient(base_url=self.intake_server.url) as client:
            response = await client.get(f"/fhir/Task/{case_id}", headers=EHR)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def route(self, case_id: UUID, *services: str, consent: ConsentState | None = None,
                    summary: CaseSummary = SUMMARY) -> CaseRouted:
        """What the router would publish; by default with the consent intake holds for the case."""
        event = CaseRouted(case_id=case_id, decision_id=uuid4(), summary=summary,
                           consent=consent or await self.consent_in_intake(case_id),
                           offer_to=tuple(SERVICES[s] for s in services))
        await self.probe.publish(event)
        return event

    async def published(self, subject: str) -> list[Event]:
        """Every event on a subject so far (read with an ephemeral consumer)."""
        sub = await self.probe.js.pull_subscribe(subject, durable=None, stream=EVENTS_STREAM)
        found: list[Event] = []
        try:
            while True:
                try:
                    msgs = await sub.fetch(100, timeout=0.3)
                except TimeoutError:  # nats-py raises its own subclass or, near the deadline, a plain one
                    break
                for msg in msgs:
                    found.append(decode_event(msg.subject, msg.data))
                    await msg.ack()
        finally:
            await sub.unsubscribe()
        return found

    async def offers_of(self, app: FastAPI, case_id: UUID) -> list[Offer]:
        async with app.state.runtime.db.session() as session:
            return list((await session.exec(select(Offer).where(Offer.case_id == case_id))).all())


async def accepted_offer(world: World, notify: httpx.AsyncClient, *, identifier: str,
                         service: str = "outreach") -> tuple[UUID, dict[str, Any]]:
    """A referral through intake, routed to one service, which accepts its offer: (case id, offer)."""
    case_id = await world.refer(identifier=identifier)
    await world.route(case_id, service)
    key = f"key-{service}"
    offer = await offer_for(notify, key, case_id)
    accepted = await notify.post(f"/offers/{offer['id']}/accept", headers=provider(key))
    assert accepted.status_code == 200, accepted.text

    # The acceptance reaches intake over the bus; notify asks intake again for ~3 s before answering a
    # handoff read 503, and on a loaded machine the event can take longer: wait until intake has it.
    async def intake_knows() -> bool:
        async with world.intake.state.runtime.db.session() as session:
            return await session.get(AcceptedOffer, UUID(offer["id"])) is not None

    await eventually(intake_knows, timeout=60)
    return case_id, accepted.json()  # type: ignore[no-any-return]


def synthetic_offer(organisation_id: str) -> Offer:
    """An offer just made to a synthetic service, for tests that drive offers without routing a case."""
    now = utcnow()
    return Offer(case_id=uuid4(), service_id="svc-synthetic", service_name="Synthetic service",
                 service_type="community-outreach", organisation_id=organisation_id, summary={"risk_band": "high"},
                 created_at=now, respond_by=now + timedelta(hours=4), last_updated=now)


async def offer_for(notify: httpx.AsyncClient, key: str, case_id: UUID) -> dict[str, Any]:
    """Wait for the provider to see its offer for the case (events cross NATS asynchronously)."""
    found: dict[str, Any] = {}

    async def visible() -> bool:
        response = await notify.get("/offers", headers=provider(key))
        assert response.status_code == 200, response.text
        mine = [o for o in response.json() if o["case_id"] == str(case_id)]
        if mine:
            found.update(mine[0])
        return bool(mine)

    await eventually(visible)
    return found


@asynccontextmanager
async def world_for(nats_url: str, database_url: str, tmp_path: Path, encryption_keys: str) -> AsyncIterator[World]:
    directory = StubDirectory(SERVICE_CREDENTIALS, providers=dict(KEYS), ops_users={OPS_KEY: "ops-alex"})
    intake = create_intake(IntakeSettings(
        nats_url=nats_url, database_url=f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}", **service_auth("intake"),
        encryption_keys=encryption_keys, active_key_id="k1", seed_sample_client=True,
    ))
    directory_server = LocalServer(directory.app())
    intake_server = LocalServer(intake, lifespan="on")
    probe = Bus(nats_url, name="probe")
    await directory_server.start()
    await intake_server.start()
    await probe.start()
    try:
        await probe.wait_ready(15)
        yield World(nats_url, database_url, tmp_path, directory, directory_server, intake_server, intake, probe)
    finally:
        await probe.close()
        await intake_server.stop()
        await directory_server.stop()
