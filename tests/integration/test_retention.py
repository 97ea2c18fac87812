"""Retention (issue 13): a referral's identifying data is purged a configured time after its case
closes, by the scheduled job, with the rule on record in the audit trail; afterwards NOTHING
identifying remains in any table of any of the four services' databases — every column of every row
is searched for the synthetic survivor's name, date of birth, phone number, address, full postcode and
free text, and for the ciphertext that held them. On SQLite and PostgreSQL, all four services real."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.directory.app import create_app as create_directory
from services.directory.settings import DirectorySettings
from services.intake.app import create_app as create_intake
from services.intake.store import IdempotencyRecord, Referral
from services.launcher import SERVICES, NatsServer
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from services.notify.store import Escalation, EscalationNote
from services.router.app import create_app as create_router
from services.router.settings import RouterSettings
from shared.audit import AuditRecord
from shared.audit_chain import AuditKeys, verify
from shared.auth import hash_api_key
from tests.conftest import EXAMPLES
from tests.harness import eventually, running, service_auth, url_for
from tests.integration.conftest import EHR, intake_settings
from tests.integration.notify_world import offer_for, provider
from tests.servers import LocalServer

OPS_KEY = "pw_ops_test_key"
OPS = {"Authorization": f"Bearer {OPS_KEY}"}
PROVIDER = "pw_sample_aire_valley_da"

# A synthetic survivor whose every detail is distinctive enough to be searched for.
GIVEN, FAMILY = "Zephyrine", "Quillfeather"
BIRTH_DATE = "1987-02-13"
PHONE = "07700 900417"
ADDRESS_LINE = "17 Marrowbone Close"
POSTCODE = "LS7 9XQ"  # the sector "LS7 9" (and the district) may stay; the full postcode may not
FREE_TEXT = "Ring only when the blue curtain is open"


def synthetic_referral() -> dict[str, Any]:
    bundle = json.loads((EXAMPLES / "gp-referral.json").read_text())
    bundle["identifier"]["value"] = "retention-journey"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            resource["name"] = [{"family": FAMILY, "given": [GIVEN], "text": f"{GIVEN} {FAMILY}"}]
            resource["birthDate"] = BIRTH_DATE
            resource["telecom"] = [{"system": "phone", "value": PHONE, "use": "mobile"}]
            resource["address"] = [{"line": [ADDRESS_LINE], "city": "Leeds", "postalCode": POSTCODE}]
        if resource["resourceType"] == "ServiceRequest":
            resource["patientInstruction"] = FREE_TEXT
    return bundle


def consent_of(bundle: dict[str, Any]) -> dict[str, Any]:
    consent = copy.deepcopy(next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Consent"))
    # An EHR may well name the patient in the Consent it sends: intake keeps that copy to answer retries.
    consent["patient"] = {"display": f"{GIVEN} {FAMILY}"}
    consent["provision"]["period"]["end"] = "2027-03-01"  # a change: consent now ends sooner
    return consent


def needles(ciphertext: str) -> list[str]:
    """What must not be found, as found in a value with its spaces removed and lower-cased."""
    values = [GIVEN, FAMILY, BIRTH_DATE, PHONE, ADDRESS_LINE, POSTCODE, FREE_TEXT, ciphertext,
              ciphertext.partition(":")[2][:40]]
    return [v.replace(" ", "").lower() for v in values]


async def identifying_values_in(app: FastAPI, found_needles: list[str]) -> list[str]:
    """Every (table.column) of the service's database whose value holds one of ``found_needles``."""
    db = app.state.runtime.db
    hits = []
    async with db.engine.connect() as conn:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names(schema=db.schema))
        for name in names:
            table = await conn.run_sync(
                lambda sync, name=name: sa.Table(name, sa.MetaData(), schema=db.schema, autoload_with=sync))
            for row in (await conn.execute(sa.select(table))).mappings():
                for column, value in row.items():
                    if value is None:
                        continue
                    text = (value.decode(errors="replace") if isinstance(value, bytes)
                            else json.dumps(value, default=str) if isinstance(value, dict | list) else str(value))
                    text = text.replace(" ", "").lower()
                    hits += [f"{name}.{column}: {needle}" for needle in found_needles if needle in text]
    return hits


@dataclass
class System:
    intake: FastAPI
    apps: dict[str, FastAPI]
    clients: dict[str, httpx.AsyncClient]


@pytest.fixture
async def system(nats_server: NatsServer, database_url: str, encryption_keys: str) -> AsyncIterator[System]:
    async with AsyncExitStack() as stack:
        directory = create_directory(DirectorySettings(
            nats_url=nats_server.url, database_url=url_for(database_url, "directory"), **service_auth("directory"),
            load_sample=True, sample_ops_key_hash=hash_api_key(OPS_KEY)))
        directory_server = LocalServer(directory, lifespan="on")
        await directory_server.start()
        stack.push_async_callback(directory_server.stop)
        # The scheduled purge job runs every few tenths of a second; nothing is kept past closing or withdrawal.
        intake = create_intake(intake_settings(
            nats_server.url, url_for(database_url, "intake"), encryption_keys, directory_url=directory_server.url,
            closed_purge_days=0, purge_check_seconds=0.2, withdrawal_purge_hours=0))
        intake_server = LocalServer(intake, lifespan="on")
        await intake_server.start()
        stack.push_async_callback(intake_server.stop)
        router = create_router(RouterSettings(
            nats_url=nats_server.url, database_url=url_for(database_url, "router"), **service_auth("router"),
            directory_url=directory_server.url))
        notify = create_notify(NotifySettings(
            nats_url=nats_server.url, database_url=url_for(database_url, "notify"), **service_auth("notify"),
            directory_url=directory_server.url, intake_url=intake_server.url, environment="development",
            provider_key_cache_seconds=0.0))
        clients = {"router": await stack.enter_async_context(running(router)),
                   "notify": await stack.enter_async_context(running(notify)),
                   "intake": await stack.enter_async_context(httpx.AsyncClient(base_url=intake_server.url)),
                   "directory": await stack.enter_async_context(httpx.AsyncClient(base_url=directory_server.url))}
        yield System(intake, {"intake": intake, "router": router, "directory": directory, "notify": notify}, clients)


@pytest.mark.parametrize("ending", ["closed", "withdrawn"])
async def test_after_a_case_closes_or_consent_is_withdrawn_its_identifying_data_is_found_in_no_table(
        system: System, ending: str):
    intake, notify = system.clients["intake"], system.clients["notify"]
    bundle = synthetic_referral()
    submitted = await intake.post("/fhir/Bundle", json=bundle, headers=EHR)
    assert submitted.status_code == 202, submitted.text
    case_id = UUID(submitted.json()["id"])
    consent = await intake.put(f"/fhir/Consent/{case_id}", json=consent_of(bundle),
                               headers={**EHR, "X-Request-Id": "consent-1"})
    assert consent.status_code == 200, consent.text

    offer = await offer_for(notify, PROVIDER, case_id)
    assert (await notify.post(f"/offers/{offer['id']}/accept", headers=provider(PROVIDER))).status_code == 200
    handoff = await notify.get(f"/offers/{offer['id']}/handoff", headers=provider(PROVIDER))
    assert handoff.status_code == 200, handoff.text
    assert FAMILY in handoff.text

    # The case is in ops' queue too, and ops wrote down more than they should have.
    notify_db = system.apps["notify"].state.runtime.db
    async with notify_db.transaction() as session:
        escalation = Escalation(case_id=case_id, reason="no answer from the provider")
        session.add(escalation)
    noted = await notify.post(f"/ops/escalations/{escalation.id}/notes", headers=OPS,
                              json={"text": f"Spoke to {GIVEN} {FAMILY} on {PHONE}"})
    assert noted.status_code == 201, noted.text

    async with system.intake.state.runtime.db.session() as session:
        ciphertext = (await session.get(Referral, case_id)).identifying  # type: ignore[union-attr]
    search = needles(ciphertext)
    # The search finds what is there: before the purge, the ciphertext, the Consent copy and the note.
    before = await identifying_values_in(system.intake, search)
    assert any(hit.startswith("referral.identifying") for hit in before), before
    assert any(hit.startswith("idempotency_record.response") for hit in before), before
    assert any(hit.startswith("escalation_note.text") for hit in await identifying_values_in(
        system.apps["notify"], search))

    if ending == "closed":
        closed = await notify.post(f"/offers/{offer['id']}/outcomes", json={"outcome": "closed"},
                                   headers=provider(PROVIDER))
        assert closed.status_code == 200, closed.text
    else:
        withdrawn = await intake.put(f"/fhir/Consent/{case_id}", json={**consent_of(bundle), "status": "inactive"},
                                     headers=EHR)
        assert withdrawn.status_code == 200, withdrawn.text

    async def purged() -> bool:
        async with system.intake.state.runtime.db.session() as session:
            referral = await session.get(Referral, case_id)
            return referral is not None and referral.purged_at is not None

    await eventually(purged, timeout=30)

    async def notes_emptied() -> bool:  # notify hears referral.purged
        async with notify_db.session() as session:
            return (await session.exec(sa.select(EscalationNote.text))).scalars().all() == [""]  # type: ignore[call-overload]

    await eventually(notes_emptied, timeout=30)

    for service in SERVICES:
        assert await identifying_values_in(system.apps[service], search) == [], service

    # The non-identifying record stays for statistics: the Task, the routing summary, the audit trail.
    task = await intake.get(f"/fhir/Task/{case_id}", headers=EHR)
    assert task.status_code == 200 and task.json()["status"] in ("completed", "cancelled")
    async with system.intake.state.runtime.db.session() as session:
        referral = await session.get(Referral, case_id)
        assert referral is not None and referral.summary["postcode_district"] == "LS7"
        assert referral.closed_at is not None or ending == "withdrawn"
        assert (await session.exec(sa.select(IdempotencyRecord).where(  # type: ignore[call-overload]
            IdempotencyRecord.location == f"/fhir/Consent/{case_id}"))).first() is None
    # ...and a provider asking again is told the data is gone.
    assert (await notify.get(f"/offers/{offer['id']}/handoff", headers=provider(PROVIDER))).status_code == 410

    # The audit trail has the whole story, readable by ops through the API, and its chain holds.
    trail = await intake.get("/ops/audit/intake", params={"case": str(case_id)}, headers=OPS)
    assert trail.status_code == 200, trail.text
    story = [(e["actor_kind"], e["action"], e["reason"]) for e in reversed(trail.json())]
    updated = ("ehr-client", "update-consent", "consent updated by the referrer")
    assert story == [updated, ("service", "release-identifying-data", "consent covers specialist-da-service"),
                     *([updated] if ending == "withdrawn" else []),
                     ("service", "purge-identifying-data", "case closed" if ending == "closed" else "consent withdrawn")
                     ], story
    async with notify_db.session() as session:
        notify_story = (await session.exec(sa.select(AuditRecord.action, AuditRecord.reason)  # type: ignore[call-overload]
                                           .where(AuditRecord.case_id == case_id).order_by(AuditRecord.at))).all()
    assert [tuple(r) for r in notify_story][-1] == (
        "purge-escalation-notes", f"identifying data purged: {'case-closed' if ending == 'closed' else 'consent-withdrawn'}")
    for service in SERVICES:
        report = await verify(system.apps[service].state.runtime.db, AuditKeys())
        assert not report.findings, (service, report.findings)
    async with system.intake.state.runtime.db.session() as session:
        rows = (await session.exec(sa.select(AuditRecord).where(AuditRecord.case_id == case_id))).all()  # type: ignore[call-overload]
    assert all(FAMILY not in r[0].detail for r in rows)
