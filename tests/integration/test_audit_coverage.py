"""Every read or release of identifying data, consent change, credential action and ops action is on
the audit trail (issue 13) — the kinds not pinned elsewhere: a referral cancelled by its referrer, the
identifying data re-encrypted by a key rotation, and ops reading EHR clients' details. (Releases,
consent changes and purges: test_retention; credential issue/rotate/expire/revoke: test_credentials;
notify's ops actions: test_notify_deadlines_and_ops; directory edits and credential reads:
test_audit_api.)"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from uuid import UUID

import httpx
import pytest
from sqlmodel import col, select

from services.intake.app import create_app
from services.intake.keys import rotate_identifying
from services.launcher import NatsServer
from shared.audit import AuditRecord
from shared.crypto import FieldCipher
from tests.harness import SERVICE_CREDENTIALS, running
from tests.integration.conftest import EHR, intake_settings
from tests.integration.test_intake_referrals import cancellation, load
from tests.servers import StubDirectory, serving

OPS_KEY = "pw_ops_test_key"
OPS = {"Authorization": f"Bearer {OPS_KEY}"}


@pytest.fixture
async def intake(nats_server: NatsServer, database_url: str, encryption_keys: str) -> AsyncIterator[httpx.AsyncClient]:
    stub = StubDirectory(SERVICE_CREDENTIALS, ops_users={OPS_KEY: "ops-alex"})
    async with serving(stub.app()) as directory:
        app = create_app(intake_settings(nats_server.url, database_url, encryption_keys, directory_url=directory.url))
        async with running(app) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def trail(client: httpx.AsyncClient) -> list[AuditRecord]:
    async with client.app.state.runtime.db.session() as session:  # type: ignore[attr-defined]
        return list((await session.exec(select(AuditRecord).order_by(col(AuditRecord.at)))).all())


async def test_a_cancellation_a_key_rotation_and_ops_reading_clients_are_each_on_record(intake, encryption_keys):
    referred = await intake.post("/fhir/Bundle", json=load("gp-referral.json"), headers=EHR)
    assert referred.status_code == 202, referred.text
    case_id = UUID(referred.json()["id"])
    cancelled = await intake.post("/fhir/Bundle", json=cancellation(id=str(case_id)), headers=EHR)
    assert cancelled.status_code == 200, cancelled.text

    assert (await intake.get("/ops/clients", headers=OPS)).status_code == 200
    assert (await intake.get("/ops/clients/sample-ehr", headers=OPS)).status_code == 200

    cipher = FieldCipher.from_config(f"{encryption_keys},k2:{base64.b64encode(secrets.token_bytes(32)).decode()}", "k2")
    assert (await rotate_identifying(intake.app.state.runtime.db, cipher)).rotated == 1

    records = [(r.actor_kind, r.actor_id, r.action, r.case_id, r.reason) for r in await trail(intake)]
    assert records == [
        ("service", "sample-data", "issue-ehr-client", None, ""),  # the sample client, made at start-up
        ("ehr-client", "sample-ehr", "cancel-referral", case_id, "survivor-request"),
        ("ops", "ops-alex", "list-ehr-clients", None, ""),
        ("ops", "ops-alex", "read-ehr-client", None, ""),
        ("service", "intake-key-rotation", "re-encrypt-identifying-data", None, "encryption key rotation"),
    ]
