"""Credentials an area issues itself, for every kind of caller: an EHR client (intake), a provider's
named keys (directory, used at notify) and ops users (directory, used at every service). Each action —
issue, use, rotate, expire, revoke — and the audit record it leaves (who, what, never the key)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from services.directory.app import create_app as create_directory
from services.directory.credentials import NoBootstrap, OpsUserCreate, bootstrap_ops_user
from services.directory.settings import DirectorySettings
from services.intake.app import create_app as create_intake
from services.launcher import NatsServer
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from shared.audit import AuditRecord
from tests.conftest import EXAMPLES
from tests.harness import eventually, running, service_auth
from tests.integration.conftest import intake_settings
from tests.servers import LocalServer

ORGANISATION = {"id": "moorside-da", "name": "Moorside Domestic Abuse Service (synthetic)"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Area:
    directory_app: FastAPI
    directory: httpx.AsyncClient
    ops_key: str  # the bootstrapped first ops user, "alex"

    @property
    def ops(self) -> dict[str, str]:
        return bearer(self.ops_key)


@asynccontextmanager
async def area(nats_url: str, database_url: str) -> AsyncIterator[Area]:
    """A real directory on a real port (other services ask it about ops keys), with its first ops user."""
    app = create_directory(DirectorySettings(nats_url=nats_url, database_url=database_url,
                                             **service_auth("directory")))
    server = LocalServer(app, lifespan="on")
    await server.start()
    try:
        first = await bootstrap_ops_user(app.state.runtime.db, OpsUserCreate(id="alex", name="Alex (synthetic)"))
        async with httpx.AsyncClient(base_url=server.url) as directory:
            yield Area(app, directory, first.api_key)
    finally:
        await server.stop()


async def audit_of(app: FastAPI) -> list[AuditRecord]:
    async with app.state.runtime.db.session() as session:
        return list((await session.exec(select(AuditRecord).order_by(col(AuditRecord.at)))).all())


def trail(records: list[AuditRecord], kind: str) -> list[tuple[str, str, str]]:
    """What was done with credentials of ``kind`` (reads of their details are audited too, but not here)."""
    return [(r.actor_kind, r.actor_id, r.action) for r in records
            if r.action.endswith(kind) and not r.action.startswith(("read-", "list-"))]


def bundle_for(ods: str, identifier: str) -> dict[str, Any]:
    bundle = json.loads((EXAMPLES / "gp-referral.json").read_text())
    bundle["identifier"]["value"] = identifier
    text = json.dumps(bundle).replace('"Y00001"', f'"{ods}"')
    return json.loads(text)  # type: ignore[no-any-return]


async def test_an_ehr_client_is_issued_used_rotated_expired_and_revoked_and_each_is_audited(
    nats_server: NatsServer, database_url: str, encryption_keys: str, tmp_path: Path
) -> None:
    async with area(nats_server.url, f"sqlite+aiosqlite:///{tmp_path / 'directory.db'}") as pathways:
        intake_app = create_intake(intake_settings(nats_server.url, database_url, encryption_keys,
                                                   seed_sample_client=False, directory_url=str(pathways.directory.base_url)))
        async with running(intake_app) as intake:
            fhir = {"Content-Type": "application/fhir+json"}
            assert (await intake.post("/ops/clients", json={"id": "emis-leeds", "name": "x", "ods_codes": ["Y00001"]},
                                      headers=bearer("pw_ops_not_issued"))).status_code == 401

            created = await intake.post("/ops/clients", headers=pathways.ops, json={
                "id": "emis-leeds", "name": "EMIS Web, Leeds North PCN (synthetic)",
                "ods_codes": ["y00001", "Y00002"], "valid_days": 30})
            assert created.status_code == 201, created.text
            client = created.json()
            key = client["api_key"]
            assert client["ods_codes"] == ["Y00001", "Y00002"] and client["state"] == "active"
            assert client["created_by"] == "alex"
            # Shown once: reads never carry the key.
            shown = (await intake.get("/ops/clients/emis-leeds", headers=pathways.ops)).json()
            assert "api_key" not in shown and key not in json.dumps(shown)
            assert [c["id"] for c in (await intake.get("/ops/clients", headers=pathways.ops)).json()] == ["emis-leeds"]
            again = await intake.post("/ops/clients", headers=pathways.ops,
                                      json={"id": "emis-leeds", "name": "again", "ods_codes": ["Y00001"]})
            assert again.status_code == 409

            # Use: a referral for one of its ODS codes; another ODS code is refused.
            posted = await intake.post("/fhir/Bundle", json=bundle_for("Y00002", "cred-1"), headers={**fhir, **bearer(key)})
            assert posted.status_code == 202, posted.text
            task = f"/fhir/Task/{posted.json()['id']}"
            other = await intake.post("/fhir/Bundle", json=bundle_for("Y00099", "cred-2"), headers={**fhir, **bearer(key)})
            assert other.status_code == 403

            # Rotate: the new key works, the old one is refused at once.
            rotated = await intake.post("/ops/clients/emis-leeds/rotate", headers=pathways.ops, json={"valid_days": 90})
            assert rotated.status_code == 200
            new_key = rotated.json()["api_key"]
            assert (await intake.get(task, headers=bearer(key))).status_code == 401
            assert (await intake.get(task, headers=bearer(new_key))).status_code == 200

            # Expire: refused; rotating an expired client gives it a working key again.
            expired = await intake.post("/ops/clients/emis-leeds/expire", headers=pathways.ops)
            assert expired.json()["state"] == "expired"
            refused = await intake.get(task, headers=bearer(new_key))
            assert refused.status_code == 401 and refused.json()["resourceType"] == "OperationOutcome"
            renewed = (await intake.post("/ops/clients/emis-leeds/rotate", headers=pathways.ops)).json()["api_key"]
            assert (await intake.get(task, headers=bearer(renewed))).status_code == 200

            # Revoke: refused for good; revoking again changes nothing; rotating a revoked client is a 409.
            revoked = await intake.post("/ops/clients/emis-leeds/revoke", headers=pathways.ops)
            assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
            assert (await intake.get(task, headers=bearer(renewed))).status_code == 401
            assert (await intake.post("/ops/clients/emis-leeds/revoke", headers=pathways.ops)).status_code == 200
            conflict = await intake.post("/ops/clients/emis-leeds/rotate", headers=pathways.ops)
            assert conflict.status_code == 409 and conflict.headers["content-type"] == "application/problem+json"
            assert (await intake.post("/ops/clients/emis-leeds/expire", headers=pathways.ops)).status_code == 409

            records = await audit_of(intake_app)
            assert trail(records, "ehr-client") == [
                ("ops", "alex", "issue-ehr-client"), ("ops", "alex", "rotate-ehr-client"),
                ("ops", "alex", "expire-ehr-client"), ("ops", "alex", "rotate-ehr-client"),
                ("ops", "alex", "revoke-ehr-client"),
            ]
            everything = json.dumps([r.model_dump(mode="json") for r in records])
            assert not any(k in everything for k in (key, new_key, renewed))


async def test_a_provider_holds_named_keys_that_are_rotated_expired_and_revoked_at_notify(
    nats_server: NatsServer, database_url: str, tmp_path: Path
) -> None:
    async with area(nats_server.url, database_url) as pathways:
        directory = pathways.directory
        assert (await directory.post("/organisations", json=ORGANISATION, headers=pathways.ops)).status_code == 201
        issued = {}
        for name in ("case-system", "inbox"):
            answer = await directory.post("/organisations/moorside-da/keys", json={"name": name}, headers=pathways.ops)
            assert answer.status_code == 201, answer.text
            issued[name] = answer.json()["api_key"]
        assert (await directory.post("/organisations/moorside-da/keys", json={"name": "inbox"},
                                     headers=pathways.ops)).status_code == 409
        listed = (await directory.get("/organisations/moorside-da/keys", headers=pathways.ops)).json()
        assert [(k["name"], k["state"]) for k in listed] == [("case-system", "active"), ("inbox", "active")]
        assert not any(key in json.dumps(listed) for key in issued.values())

        # A long cache at notify: only the directory's change announcement makes revocation prompt.
        notify_app = create_notify(NotifySettings(
            nats_url=nats_server.url, database_url=f"sqlite+aiosqlite:///{tmp_path / 'notify.db'}",
            **service_auth("notify"), directory_url=str(directory.base_url), provider_key_cache_seconds=3600))
        async with running(notify_app) as notify:
            async def status_with(key: str) -> int:
                return (await notify.get("/offers", headers=bearer(key))).status_code

            assert await status_with(issued["case-system"]) == 200
            assert await status_with(issued["inbox"]) == 200
            assert await status_with("pw_prv_never_issued") == 401

            rotated = await directory.post("/organisations/moorside-da/keys/case-system/rotate", headers=pathways.ops)
            assert rotated.status_code == 200
            fresh = rotated.json()["api_key"]
            assert await status_with(fresh) == 200
            await eventually(lambda: _is(status_with(issued["case-system"]), 401))

            expired = await directory.post("/organisations/moorside-da/keys/case-system/expire", headers=pathways.ops)
            assert expired.json()["state"] == "expired"
            await eventually(lambda: _is(status_with(fresh), 401))

            revoked = await directory.post("/organisations/moorside-da/keys/inbox/revoke", headers=pathways.ops)
            assert revoked.json()["state"] == "revoked"
            await eventually(lambda: _is(status_with(issued["inbox"]), 401))
            assert (await directory.post("/organisations/moorside-da/keys/inbox/rotate",
                                         headers=pathways.ops)).status_code == 409
            assert (await directory.post("/organisations/moorside-da/keys/nothing/revoke",
                                         headers=pathways.ops)).status_code == 404

        records = await audit_of(pathways.directory_app)
        assert trail(records, "provider-key") == [
            ("ops", "alex", "issue-provider-key"), ("ops", "alex", "issue-provider-key"),
            ("ops", "alex", "rotate-provider-key"), ("ops", "alex", "expire-provider-key"),
            ("ops", "alex", "revoke-provider-key"),
        ]
        everything = json.dumps([r.model_dump(mode="json") for r in records])
        assert not any(k in everything for k in (*issued.values(), fresh))


async def test_ops_users_are_named_and_their_actions_attributed_and_revocation_is_immediate_everywhere(
    nats_server: NatsServer, database_url: str, encryption_keys: str, tmp_path: Path
) -> None:
    async with area(nats_server.url, database_url) as pathways:
        directory = pathways.directory
        # The bootstrap path is for the very first ops user only.
        with pytest.raises(NoBootstrap):
            await bootstrap_ops_user(pathways.directory_app.state.runtime.db, OpsUserCreate(id="mallory"))

        created = await directory.post("/ops-users", json={"id": "sam.okafor", "name": "Sam (synthetic)"},
                                       headers=pathways.ops)
        assert created.status_code == 201, created.text
        sam = created.json()["api_key"]
        assert created.json()["created_by"] == "alex"

        intake_app = create_intake(intake_settings(
            nats_server.url, f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}", encryption_keys,
            seed_sample_client=False, directory_url=str(directory.base_url)))
        async with running(intake_app) as intake:
            # Sam's actions on two services are Sam's in each audit trail.
            org = await directory.post("/organisations", json=ORGANISATION, headers=bearer(sam))
            assert org.status_code == 201
            client = await intake.post("/ops/clients", headers=bearer(sam),
                                       json={"id": "tpp-bradford", "name": "SystmOne (synthetic)", "ods_codes": ["Y00003"]})
            assert client.status_code == 201
            assert ("ops", "sam.okafor", "created-organisation") in trail(await audit_of(pathways.directory_app), "organisation")
            assert trail(await audit_of(intake_app), "ehr-client") == [("ops", "sam.okafor", "issue-ehr-client")]

            # Rotate: the old key stops at once, on the directory and at intake.
            rotated = await directory.post("/ops-users/sam.okafor/rotate", headers=pathways.ops)
            sam_new = rotated.json()["api_key"]
            assert (await intake.get("/ops/clients", headers=bearer(sam))).status_code == 401
            assert (await directory.get("/ops-users", headers=bearer(sam))).status_code == 401
            assert (await intake.get("/ops/clients", headers=bearer(sam_new))).status_code == 200

            # Expire, then revoke (Sam may be revoked by Alex, and the revocation is final).
            assert (await directory.post("/ops-users/sam.okafor/expire", headers=pathways.ops)).json()["state"] == "expired"
            assert (await intake.get("/ops/clients", headers=bearer(sam_new))).status_code == 401
            assert (await directory.post("/ops-users/sam.okafor/revoke", headers=pathways.ops)).json()["state"] == "revoked"
            assert (await directory.post("/ops-users/sam.okafor/revoke", headers=pathways.ops)).status_code == 200
            assert (await directory.post("/ops-users/sam.okafor/rotate", headers=pathways.ops)).status_code == 409
            assert (await directory.get("/ops-users", headers=bearer(sam_new))).status_code == 401

            users = (await directory.get("/ops-users", headers=pathways.ops)).json()
            assert [(u["id"], u["state"]) for u in users] == [("alex", "active"), ("sam.okafor", "revoked")]

        records = await audit_of(pathways.directory_app)
        assert trail(records, "ops-user") == [
            ("ops", "bootstrap", "issue-ops-user"), ("ops", "alex", "issue-ops-user"),
            ("ops", "alex", "rotate-ops-user"), ("ops", "alex", "expire-ops-user"), ("ops", "alex", "revoke-ops-user"),
        ]
        everything = json.dumps([r.model_dump(mode="json") for r in records])
        assert not any(k in everything for k in (pathways.ops_key, sam, sam_new))


async def _is(status: Any, expected: int) -> bool:
    return bool(await status == expected)


async def test_a_revoked_provider_key_stops_at_the_next_call_and_unknown_keys_cost_the_directory_nothing(
    nats_server: NatsServer, database_url: str, tmp_path: Path
) -> None:
    """Issue 13: no positive cache survives a revocation (notify's defaults), and a key the directory does
    not know is refused from notify's bounded negative cache on later tries."""
    async with area(nats_server.url, database_url) as pathways:
        directory = pathways.directory
        assert (await directory.post("/organisations", json=ORGANISATION, headers=pathways.ops)).status_code == 201
        key = (await directory.post("/organisations/moorside-da/keys", json={"name": "inbox"},
                                    headers=pathways.ops)).json()["api_key"]
        notify_app = create_notify(NotifySettings(
            nats_url=nats_server.url, database_url=f"sqlite+aiosqlite:///{tmp_path / 'notify.db'}",
            **service_auth("notify"), directory_url=str(directory.base_url)))
        async with running(notify_app) as notify:
            asked: list[str] = []
            http = notify_app.state.runtime.http
            original = http.post

            async def counting_post(url: str, **kwargs: Any) -> httpx.Response:
                if url.endswith("/internal/providers/authenticate"):
                    asked.append(url)
                return await original(url, **kwargs)

            http.post = counting_post  # type: ignore[method-assign]
            assert (await notify.get("/offers", headers=bearer(key))).status_code == 200
            assert (await notify.get("/offers", headers=bearer(key))).status_code == 200
            revoked = await directory.post("/organisations/moorside-da/keys/inbox/revoke", headers=pathways.ops)
            assert revoked.json()["state"] == "revoked"
            # The very next call: no waiting for an announcement.
            assert (await notify.get("/offers", headers=bearer(key))).status_code == 401

            # The directory's announcements (the organisation, its key, the revocation) reach notify when the bus
            # brings them, and each rightly empties the negative cache (a key just issued must not stay
            # refused): each one that lands during the tries may cost one more question, never more.
            cleared: list[int] = []
            unknown = notify_app.state.unknown_provider_keys
            original_clear = unknown.clear
            unknown.clear = lambda: (cleared.append(1), original_clear())[1]  # type: ignore[method-assign]
            asked.clear()
            for _ in range(5):
                assert (await notify.get("/offers", headers=bearer("pw_prv_guessed_key"))).status_code == 401
            assert 1 <= len(asked) <= 1 + len(cleared) and len(cleared) <= 3
