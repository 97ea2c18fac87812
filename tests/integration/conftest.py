"""Intake in-process (real lifespan, real database, real NATS), shared by intake's integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from services.intake import referrals
from services.intake.app import SAMPLE_CLIENT, create_app
from services.intake.settings import IntakeSettings
from services.launcher import NatsServer
from tests.harness import running, service_auth

async def record_acceptance(app: object, case_id: str, organisation_id: str) -> None:
    """Intake's record of an accepted offer, as its consumer writes it when notify announces one
    (``case.offer.accepted``; tests/integration/test_release_check.py goes through the bus)."""
    from uuid import UUID, uuid4

    from services.intake.store import AcceptedOffer

    async with app.state.runtime.db.transaction() as session:  # type: ignore[attr-defined]
        session.add(AcceptedOffer(offer_id=uuid4(), case_id=UUID(case_id), organisation_id=organisation_id,
                                  service_id=f"{organisation_id}-service"))


EHR = {"Authorization": f"Bearer {SAMPLE_CLIENT['api_key']}", "Content-Type": "application/fhir+json"}


def intake_settings(nats_url: str, database_url: str, encryption_keys: str, **overrides: object) -> IntakeSettings:
    values: dict[str, object] = {
        "nats_url": nats_url,
        "database_url": database_url,
        **service_auth("intake"),
        "encryption_keys": encryption_keys,
        "active_key_id": "k1",
        "seed_sample_client": True,
        "max_body_bytes": 200_000,
        # Local receivers the tests start (a client's JWKS URL) listen on loopback, which outbound calls
        # may reach only when allowed explicitly (shared.egress).
        "egress_allowed_networks": "127.0.0.0/8",
        **overrides,
    }
    return IntakeSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def intake(nats_server: NatsServer, database_url: str, encryption_keys: str) -> AsyncIterator:
    app = create_app(intake_settings(nats_server.url, database_url, encryption_keys))
    async with running(app) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


@dataclass
class Race:
    """How many requests entered the race together, and how many replayed the winner's answer after the
    unique idempotency key refused their own insert (the losers' path)."""

    entered: int = 0
    replays: int = 0


@pytest.fixture
def racing_retries(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], Race]:
    """Make ``n`` concurrent retries really race: each waits at the door of the idempotent write until
    all ``n`` are there, so they all try to store their answer at once (on PostgreSQL, on parallel
    connections; on SQLite they queue for the one writer) and all but one must take the path that
    replays the winner's answer after the unique key refused theirs."""

    def arm(n: int) -> Race:
        race = Race()
        barrier = asyncio.Barrier(n)
        original_recorded = referrals._recorded

        def door(original: Callable[..., Awaitable[object]]) -> Callable[..., Awaitable[object]]:
            async def wait_for_all(*args: object, **kwargs: object) -> object:
                if race.entered < n:
                    race.entered += 1
                    await barrier.wait()
                return await original(*args, **kwargs)

            return wait_for_all

        async def recorded(*args: object, **kwargs: object) -> object:
            race.replays += 1
            return await original_recorded(*args, **kwargs)  # type: ignore[arg-type]

        # New referrals are written through the group commit (``receive``), other changes by ``idempotent``.
        monkeypatch.setattr(referrals, "idempotent", door(referrals.idempotent))
        monkeypatch.setattr(referrals, "receive", door(referrals.receive))
        monkeypatch.setattr(referrals, "_recorded", recorded)
        return race

    return arm
