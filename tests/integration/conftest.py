"""Intake in-process (real lifespan, real database, real NATS), shared by intake's integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.intake.app import SAMPLE_CLIENT, create_app
from services.intake.settings import IntakeSettings
from services.launcher import NatsServer
from tests.harness import SERVICE_TOKEN, running

EHR = {"Authorization": f"Bearer {SAMPLE_CLIENT['api_key']}", "Content-Type": "application/fhir+json"}


def intake_settings(nats_url: str, database_url: str, encryption_keys: str, **overrides: object) -> IntakeSettings:
    values: dict[str, object] = {
        "nats_url": nats_url,
        "database_url": database_url,
        "service_token": SERVICE_TOKEN,
        "encryption_keys": encryption_keys,
        "active_key_id": "k1",
        "seed_sample_client": True,
        "max_body_bytes": 200_000,
        **overrides,
    }
    return IntakeSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def intake(nats_server: NatsServer, database_url: str, encryption_keys: str) -> AsyncIterator:
    app = create_app(intake_settings(nats_server.url, database_url, encryption_keys))
    async with running(app) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client
