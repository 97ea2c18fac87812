"""Ops read a service's audit trail through the API (issue 13): by case, actor, action and time, newest
first and paged; only with an ops credential; the query itself is on record; and what the running
service writes is sealed into its hash chain shortly after each audited commit."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import uuid4

import httpx
import pytest
from sqlmodel import col, select

from services.directory.app import create_app
from services.directory.settings import DirectorySettings
from services.launcher import NatsServer
from shared.audit import AuditRecord, record
from shared.audit_chain import AuditKeys, verify
from shared.auth import Caller, CallerKind, hash_api_key
from shared.events import utcnow
from tests.harness import eventually, running, service_auth

OPS_KEY = "pw_ops_test_key"
OPS = {"Authorization": f"Bearer {OPS_KEY}"}
TRAIL = "/ops/audit/directory"


@pytest.fixture
async def directory(nats_server: NatsServer, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(DirectorySettings(
        nats_url=nats_server.url, database_url=database_url, **service_auth("directory"), load_sample=True,
        sample_ops_key_hash=hash_api_key(OPS_KEY), audit_seal_seconds=60,
    ))
    async with running(app) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


async def test_ops_query_the_trail_by_case_actor_action_and_time_newest_first_in_pages(directory):
    db = directory.app.state.runtime.db
    case_a, case_b = uuid4(), uuid4()
    sam = Caller(CallerKind.ops, "sam.okafor")
    start = utcnow()
    for i in range(5):
        async with db.transaction() as session:
            record(session, sam, "read-escalation", case_id=case_a if i % 2 == 0 else case_b, detail=f"escalation {i}",
                   reason="ops review")
    # An ops edit through the API is on record too, under the ops user who made it.
    paused = await directory.patch("/services/aire-valley-da-outreach/capacity", json={"accepting": False},
                                   headers=OPS)
    assert paused.status_code == 200, paused.text

    by_case = await directory.get(TRAIL, params={"case": str(case_a)}, headers=OPS)
    assert by_case.status_code == 200, by_case.text
    assert [e["detail"] for e in by_case.json()] == ["escalation 4", "escalation 2", "escalation 0"]
    assert {e["reason"] for e in by_case.json()} == {"ops review"}

    edits = (await directory.get(TRAIL, params={"actor": "dev-ops", "action": "updated-service"}, headers=OPS)).json()
    assert [(e["actor_kind"], e["detail"]) for e in edits] == [("ops", "service aire-valley-da-outreach")]

    window = {"since": start.isoformat(), "until": (utcnow() + timedelta(seconds=1)).isoformat(),
              "actor": "sam.okafor", "limit": "2"}
    first = await directory.get(TRAIL, params=window, headers=OPS)
    assert [e["detail"] for e in first.json()] == ["escalation 4", "escalation 3"]
    second = await directory.get(first.links["next"]["url"], headers=OPS)
    third = await directory.get(second.links["next"]["url"], headers=OPS)
    assert [e["detail"] for e in second.json() + third.json()] == ["escalation 2", "escalation 1", "escalation 0"]
    assert "next" not in third.links
    nothing_yet = await directory.get(TRAIL, params={"until": start.isoformat(), "actor": "sam.okafor"}, headers=OPS)
    assert nothing_yet.json() == []

    # Each query is itself on record: who looked, at what.
    async with db.session() as session:
        queries = (await session.exec(select(AuditRecord).where(AuditRecord.action == "read-audit-trail")
                                      .order_by(col(AuditRecord.at)))).all()
    assert len(queries) == 6 and {q.actor_id for q in queries} == {"dev-ops"}
    assert queries[0].case_id == case_a


@pytest.mark.parametrize(("params", "status"), [
    ({"since": "2026-11-20T10:00:00"}, 422),  # no time zone: ambiguous
    ({"case": "not-a-case"}, 422),
    ({"limit": "0"}, 422),
    ({"since": "2026-11-21T10:00:00Z", "until": "2026-11-20T10:00:00Z"}, 400),
    ({"cursor": "bm9wZQ=="}, 400),
    ({"cursor": base64.urlsafe_b64encode(json.dumps(["2026-11-20T10:00:00", str(uuid4())]).encode()).decode()}, 400),
    ({"cursor": base64.urlsafe_b64encode(b'{"a": 1}').decode()}, 400),
])
async def test_a_malformed_query_is_a_clear_4xx(directory, params, status):
    response = await directory.get(TRAIL, params=params, headers=OPS)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_only_ops_read_the_trail(directory):
    assert (await directory.get(TRAIL)).status_code == 401
    assert (await directory.get(TRAIL, headers={"Authorization": "Bearer pw_sample_aire_valley_da"})).status_code == 401


async def test_the_running_service_seals_what_it_records_soon_after_the_commit(directory):
    """The sealer is woken by the audited commit (its timer here is a minute away)."""
    created = await directory.post("/ops-users", json={"id": "riley.ng"}, headers=OPS)
    assert created.status_code == 201, created.text
    db = directory.app.state.runtime.db

    async def sealed() -> bool:
        async with db.session() as session:
            issued = (await session.exec(select(AuditRecord).where(AuditRecord.action == "issue-ops-user",
                                                                   AuditRecord.detail.startswith("ops user riley.ng")))).one()
        return issued.seq is not None

    await eventually(sealed)
    report = await verify(db, AuditKeys())
    assert report.intact and report.sealed >= 1
    listed = (await directory.get(TRAIL, params={"action": "issue-ops-user"}, headers=OPS)).json()
    assert any(e["seq"] is not None and e["hash"] for e in listed)
    # /metrics shows how far the chain goes and how long the oldest unsealed record has waited.
    exposition = (await directory.get("/metrics")).text
    seq = next(float(line.split()[-1]) for line in exposition.splitlines()
               if line.startswith('pathways_audit_chain_seq{service="directory"}'))
    assert seq >= report.sealed
    assert 'pathways_audit_unsealed_oldest_seconds{service="directory"}' in exposition


async def test_reading_credentials_details_is_on_record(directory):
    assert (await directory.get("/ops-users", headers=OPS)).status_code == 200
    assert (await directory.get("/organisations/aire-valley-da/keys", headers=OPS)).status_code == 200
    listed = (await directory.get(TRAIL, params={"actor": "dev-ops"}, headers=OPS)).json()
    assert [(e["action"], e["detail"]) for e in listed] == [
        ("list-provider-keys", "organisation aire-valley-da"), ("list-ops-users", "1 shown")]
