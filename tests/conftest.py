"""Fixtures shared by the suite: real NATS servers on free ports, and real databases.

Database tests run on SQLite always, and on PostgreSQL when one answers at 127.0.0.1:5432; each
PostgreSQL test gets a fresh database of its own, dropped afterwards.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from services.launcher import NatsServer, postgres_answers

# CI sets CI (to "true"); "false" or "0" are read as unset, as most CI tools do.
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

# In CI the property-based tests run a fixed set of examples: a new random find must not fail a
# submission by chance. Locally they explore afresh on every run.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if IN_CI:
    hypothesis_settings.load_profile("ci")

# Tests that must run in CI, never skip: the PostgreSQL variants (``postgres``) and the Kubernetes
# manifest checks (``kubernetes``, also given to every test in a file whose name says k8s or kubernetes).
# Locally a missing PostgreSQL or kubectl skips them, and ``-ra`` lists the skips; with CI set, such a
# skip fails the run, so a green CI means they ran.
MUST_RUN_IN_CI = ("postgres", "kubernetes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(word in item.path.name for word in ("k8s", "kubernetes")):
            item.add_marker(pytest.mark.kubernetes)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    required = [name for name in MUST_RUN_IN_CI if item.get_closest_marker(name)]
    if IN_CI and report.skipped and required and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI, which must run every {'/'.join(required)} test: {reason}. "
            "Start PostgreSQL / install kubectl (.ci/run does both) instead of letting the check skip."
        )
    return report

PG_HOST = os.environ.get("PATHWAYS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PATHWAYS_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("PATHWAYS_TEST_PG_USER", "postgres")


POSTGRES_AVAILABLE = postgres_answers(PG_HOST, PG_PORT, PG_USER)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    async with postgres_database() as url:
        yield url


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test (skips the test when no server answers); its URL."""
    if not POSTGRES_AVAILABLE:
        pytest.skip(f"no PostgreSQL at {PG_HOST}:{PG_PORT}")
    import asyncpg

    name = f"pathways_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def encryption_keys() -> str:
    return "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
