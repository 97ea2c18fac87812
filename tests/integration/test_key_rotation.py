"""`pathways keys rotate` re-encrypts stored identifying data under the new key, on SQLite and
PostgreSQL, while the old key still decrypts whatever has not been rotated yet."""

from __future__ import annotations

import base64
import json
import secrets
from uuid import UUID

from sqlmodel import select

from services.intake.app import create_app
from services.intake.store import Referral
from services.launcher import NatsServer
from tests.conftest import EXAMPLES
from tests.harness import as_service, pathways, running
from tests.integration.conftest import EHR, intake_settings, record_acceptance

SERVICE = as_service("notify")


def new_key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


async def stored(app) -> dict[UUID, str]:
    async with app.state.runtime.db.session() as session:
        return {r.id: r.identifying for r in (await session.exec(select(Referral))).all()}


async def test_rotation_re_encrypts_under_the_new_key_and_the_old_key_can_then_go(
    nats_server: NatsServer, database_url: str
):
    old, new = new_key("k1"), new_key("k2")
    before = create_app(intake_settings(nats_server.url, database_url, old))
    async with running(before) as intake:
        ids = []
        for name in ("gp-referral.json", "by-and-for-deaf-bsl.json"):
            body = json.loads((EXAMPLES / name).read_text())
            ids.append((await intake.post("/fhir/Bundle", json=body, headers=EHR)).json()["id"])
        assert {v.split(":")[0] for v in (await stored(before)).values()} == {"k1"}

    # Both keys in the ring, the new one active: old values still decrypt, new ones use k2.
    ring = {"INTAKE_ENCRYPTION_KEYS": f"{old},{new}", "INTAKE_ACTIVE_KEY_ID": "k2", "DATABASE_URL": database_url}
    both = create_app(intake_settings(nats_server.url, database_url, f"{old},{new}", active_key_id="k2"))
    async with running(both) as intake:
        for case_id in ids:
            await record_acceptance(both, case_id, "o")
        handoff = await intake.get(handoff_path(ids[0]), headers=SERVICE)
        assert handoff.json()["birth_date"] == "1990-04-01"
        body = json.loads((EXAMPLES / "high-risk-no-consent-safeguarding.json").read_text())
        ids.append((await intake.post("/fhir/Bundle", json=body, headers=EHR)).json()["id"])
        await record_acceptance(both, ids[-1], "o")

        code, output = await pathways("keys", "rotate", "--batch", "1", env=ring)
        assert code == 0, output
        assert "re-encrypted 2 referral(s) under key 'k2'" in output
        assert {v.split(":")[0] for v in (await stored(both)).values()} == {"k2"}
        code, output = await pathways("keys", "rotate", env=ring)
        assert "re-encrypted 0 referral(s)" in output

    # The old key is retired: everything still decrypts.
    after = create_app(intake_settings(nats_server.url, database_url, new, active_key_id="k2"))
    async with running(after) as intake:
        for case_id, service_type in zip(ids, ("community-outreach", "community-outreach", "marac"), strict=True):
            handoff = await intake.get(handoff_path(case_id, service_type), headers=SERVICE)
            assert handoff.status_code == 200 and handoff.json()["name"]


def handoff_path(case_id: str, service_type: str = "community-outreach") -> str:
    """The handoff read as notify makes it (the first two examples consent to specialist services; the
    safeguarding one releases to the MARAC only)."""
    return f"/internal/referrals/{case_id}/handoff?organisation_id=o&service_type={service_type}&consent_version=1"


async def test_rotation_without_the_old_key_refuses_and_names_only_the_key(nats_server: NatsServer, database_url: str):
    old = new_key("k1")
    app = create_app(intake_settings(nats_server.url, database_url, old))
    async with running(app) as intake:
        body = json.loads((EXAMPLES / "gp-referral.json").read_text())
        assert (await intake.post("/fhir/Bundle", json=body, headers=EHR)).status_code == 202
    ring = {"INTAKE_ENCRYPTION_KEYS": new_key("k2"), "INTAKE_ACTIVE_KEY_ID": "k2", "DATABASE_URL": database_url}
    code, output = await pathways("keys", "rotate", env=ring)
    assert code == 1 and "key 'k1', which is not in the key ring" in output
    assert "Traceback" not in output
