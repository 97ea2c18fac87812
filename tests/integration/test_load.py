"""Concurrent load (issue 9), as behaviour: a burst of requests is answered — accepted, or refused
with a 503 and ``Retry-After`` — and never locks the service up; nothing is lost or half-written; the
service answers normally straight after. Figures (throughput, latency) are in ``bench/``, not here.

The lock-up these guard against: a request held one pooled connection (the session that authenticated
the caller) while waiting for a second (its transaction), so once as many requests as the pool has
connections were in flight, none could finish until the pool's timeout failed them all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import select

from services.directory.app import create_app as create_directory
from services.directory.settings import DirectorySettings
from services.intake.app import create_app as create_intake
from services.intake.store import IdempotencyRecord, Referral
from services.launcher import NatsServer
from services.notify.store import Offer, OfferStatus
from shared.auth import hash_api_key
from shared.events import OfferAccepted, ReferralReceived
from shared.outbox import OutboxMessage
from tests.conftest import EXAMPLES
from tests.harness import eventually, running, service_auth
from tests.integration.conftest import EHR, intake_settings
from tests.integration.notify_world import World, offer_for, provider, world_for

BURST = 64


def referral(n: int) -> tuple[dict[str, Any], dict[str, str]]:
    """A distinct referral (its own Bundle.identifier and X-Request-Id) from the GP example."""
    bundle = json.loads((EXAMPLES / "gp-referral.json").read_text())
    bundle["identifier"]["value"] = f"load-{n}-{uuid4()}"
    return bundle, {**EHR, "X-Request-Id": f"load-{n}-{uuid4()}"}


async def burst_of_referrals(client: httpx.AsyncClient, count: int = BURST) -> list[httpx.Response]:
    return await asyncio.gather(
        *(
            client.post("/fhir/Bundle", json=body, headers=headers)
            for body, headers in map(referral, range(count))
        )
    )


def assert_answered(responses: list[httpx.Response], ok: int) -> None:
    """Each one accepted, or refused as busy with a Retry-After (never another error)."""
    for response in responses:
        assert response.status_code in (ok, 503), response.text
        if response.status_code == 503:
            assert int(response.headers["Retry-After"]) >= 1


async def count(app: FastAPI, table: Any, *where: Any) -> int:
    async with app.state.runtime.db.session() as session:
        return (await session.exec(select(func.count()).select_from(table).where(*where))).one()


async def assert_whole(app: FastAPI, accepted: int) -> None:
    """One referral, one outbox event and two idempotency records per 202; nothing for a 503."""
    assert await count(app, Referral) == accepted
    assert await count(app, OutboxMessage, OutboxMessage.subject == ReferralReceived.subject) == accepted
    assert await count(app, IdempotencyRecord) == 2 * accepted


@pytest.fixture
async def loaded_intake(
    nats_server: NatsServer, database_url: str, encryption_keys: str, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    overrides = getattr(request, "param", {})
    app = create_intake(intake_settings(nats_server.url, database_url, encryption_keys, **overrides))
    async with running(app) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


# Waits far longer than the work needs: a lock-up would show as 503s after the wait, not as 202s.
@pytest.mark.parametrize(
    "loaded_intake", [{"database_wait_seconds": 30, "request_queue_seconds": 30}], indirect=True
)
async def test_a_burst_of_referrals_is_all_accepted_and_stored_whole(loaded_intake):
    responses = await burst_of_referrals(loaded_intake)
    assert [r.status_code for r in responses] == [202] * BURST, {r.status_code for r in responses}
    assert len({r.json()["id"] for r in responses}) == BURST
    await assert_whole(loaded_intake.app, BURST)
    after = await loaded_intake.post("/fhir/Bundle", json=referral(BURST)[0], headers=EHR)
    assert after.status_code == 202


@pytest.mark.parametrize(
    "loaded_intake", [{"max_concurrent_requests": 4, "request_queue_seconds": 0}], indirect=True
)
async def test_beyond_the_admission_limit_a_burst_is_refused_fast_and_nothing_half_written(loaded_intake):
    responses = await burst_of_referrals(loaded_intake)
    assert_answered(responses, 202)
    refused = [r for r in responses if r.status_code == 503]
    assert refused, "64 at once against 4 slots and no queue: some must be refused"
    assert refused[0].headers["content-type"].startswith("application/fhir+json")
    assert refused[0].json()["issue"][0]["code"] == "transient"
    await assert_whole(loaded_intake.app, len(responses) - len(refused))
    after = await loaded_intake.post("/fhir/Bundle", json=referral(BURST)[0], headers=EHR)
    assert after.status_code == 202


@pytest.mark.parametrize("loaded_intake", [{"database_wait_seconds": 0.3}], indirect=True)
async def test_with_every_connection_taken_a_referral_gets_a_fast_503_then_goes_through(loaded_intake):
    engine = loaded_intake.app.state.runtime.db.engine
    async with AsyncExitStack() as held:
        while True:  # take the whole pool, as a stuck neighbour would
            try:
                await held.enter_async_context(engine.connect())
            except PoolTimeout:
                break
        body, headers = referral(0)
        refused = await loaded_intake.post("/fhir/Bundle", json=body, headers=headers)
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
    await assert_whole(loaded_intake.app, 0)
    retried = await loaded_intake.post("/fhir/Bundle", json=body, headers=headers)
    assert retried.status_code == 202
    await assert_whole(loaded_intake.app, 1)


# The writer slot is SQLite's: PostgreSQL writers run side by side.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("loaded_intake", [{"database_wait_seconds": 0.3}], indirect=True)
async def test_sqlite_writers_take_turns_and_a_writer_kept_waiting_too_long_gets_503(loaded_intake):
    db = loaded_intake.app.state.runtime.db
    holding, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.transaction():
            holding.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await holding.wait()
    body, headers = referral(0)
    refused = await loaded_intake.post("/fhir/Bundle", json=body, headers=headers)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    release.set()
    await task
    assert (await loaded_intake.post("/fhir/Bundle", json=body, headers=headers)).status_code == 202
    await assert_whole(loaded_intake.app, 1)


# --- notify: providers polling and answering at once ------------------------------------------------


@pytest.fixture
async def world(
    nats_server: NatsServer, database_url: str, tmp_path: Path, encryption_keys: str
) -> AsyncIterator[World]:
    async with world_for(nats_server.url, database_url, tmp_path, encryption_keys) as w:
        yield w


async def test_a_burst_of_provider_requests_is_answered_and_every_accept_recorded_whole(world):
    cases = [await world.refer(identifier=f"GP-REF-LOAD-{n}") for n in range(16)]
    async with world.notify(database_wait_seconds=30, request_queue_seconds=30) as notify:
        for case_id in cases:
            await world.route(case_id, "outreach")
        offers = [await offer_for(notify, "key-outreach", case_id) for case_id in cases]
        key = provider("key-outreach")
        requests = (
            [notify.post(f"/offers/{o['id']}/accept", headers=key) for o in offers]
            + [notify.get(f"/offers/{o['id']}", headers=key) for o in offers]
            + [notify.get("/offers", headers=key) for _ in range(BURST - 2 * len(offers))]
        )
        responses = await asyncio.gather(*requests)
        assert [r.status_code for r in responses] == [200] * BURST, {r.status_code for r in responses}

        app = notify.app  # type: ignore[attr-defined]
        assert await count(app, Offer, Offer.status == OfferStatus.accepted) == len(offers)
        assert await count(app, OutboxMessage, OutboxMessage.subject == OfferAccepted.subject) == len(offers)
        assert (await notify.get("/offers", headers=key)).status_code == 200


# --- directory: ops editing at once ------------------------------------------------------------------

OPS_KEY = "pw_ops_test_key"


async def test_a_burst_of_directory_ops_edits_is_answered_and_each_announced(nats_server, database_url):
    app = create_directory(
        DirectorySettings(
            nats_url=nats_server.url,
            database_url=database_url,
            **service_auth("directory"),
            load_sample=True,
            sample_ops_key_hash=hash_api_key(OPS_KEY),
            database_wait_seconds=30,
            request_queue_seconds=30,
        )
    )
    ops = {"Authorization": f"Bearer {OPS_KEY}"}
    async with running(app) as directory:
        announced = await count(app, OutboxMessage)
        responses = await asyncio.gather(
            *(
                directory.post(
                    "/organisations",
                    headers=ops,
                    json={"id": f"org-{n}", "name": f"Organisation {n} (sample)"},
                )
                for n in range(BURST)
            )
        )
        assert [r.status_code for r in responses] == [201] * BURST, {r.status_code for r in responses}
        assert await count(app, OutboxMessage) == announced + BURST

        async def published() -> bool:
            unpublished = OutboxMessage.published_at.is_(None)  # type: ignore[union-attr]
            return await count(app, OutboxMessage, unpublished) == 0

        await eventually(published)
        assert (await directory.get("/organisations")).status_code == 200
