"""The four services as processes given one PostgreSQL URL (the README's ``DATABASE_URL``): each
creates and keeps its own schema, they start together without racing, again on a restart, and one
service's outbox never holds another's events."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.launcher import SERVICES, System, free_port
from tests.conftest import EXAMPLES, PG_HOST, PG_PORT, PG_USER, POSTGRES_AVAILABLE
from tests.e2e.conftest import poll

pytestmark = pytest.mark.postgres

EHR = {"Authorization": "Bearer pw_sample_ehr_client", "Content-Type": "application/fhir+json"}
PROVIDER = {"Authorization": "Bearer pw_sample_aire_valley_da"}


async def admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def query(name: str, sql: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=name)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


@pytest.fixture
def one_database() -> Any:
    if not POSTGRES_AVAILABLE:
        pytest.skip(f"no PostgreSQL at {PG_HOST}:{PG_PORT}")
    name = f"pathways_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield name
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_four_services_on_one_postgresql_url_keep_their_own_schemas(tmp_path: Path, one_database: str):
    url = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{one_database}"
    ports = {name: free_port() for name in (*SERVICES, "nats", "nats_monitor")}
    task_id = None
    for _start in range(2):  # the first start creates the schemas, the second finds them made
        system = System(data_dir=tmp_path / ".data", ports=ports, database_url=url)
        system.start(timeout=120)
        try:
            if task_id is None:
                posted = httpx.post(f"{system.url('intake')}/fhir/Bundle", headers=EHR,
                                    content=(EXAMPLES / "gp-referral.json").read_bytes())
                assert posted.status_code == 202, posted.text
                task_id = posted.json()["id"]
            offers = poll(lambda: httpx.get(f"{system.url('notify')}/offers", headers=PROVIDER).json(),
                          lambda offers: len(offers) == 1, timeout=60)
            assert offers[0]["case_id"] == task_id
            task = httpx.get(f"{system.url('intake')}/fhir/Task/{task_id}", headers=EHR)
            assert task.status_code == 200, task.text
            assert system.exited() == {}
        finally:
            system.stop()

    tables: dict[str, set[str]] = {}
    for row in asyncio.run(query(one_database, "SELECT table_schema, table_name FROM information_schema.tables "
                                               "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")):
        tables.setdefault(row["table_schema"], set()).add(row["table_name"])
    assert set(tables) == set(SERVICES)  # nothing in public
    assert {"referral", "audit_record", "alembic_version_intake"} <= tables["intake"]
    assert {"routed_case", "alembic_version_router"} <= tables["router"] and "referral" not in tables["router"]
    for schema in SERVICES:
        assert {"outbox", "processed_event"} <= tables[schema]

    def outbox(schema: str) -> dict[str, bool]:
        rows = asyncio.run(query(one_database, f'SELECT subject, published_at IS NOT NULL AS sent FROM "{schema}".outbox'))
        return {row["subject"]: row["sent"] for row in rows}

    # Each relay published its own service's events, and only those.
    intake, router, notify = outbox("intake"), outbox("router"), outbox("notify")
    assert set(intake) == {"referral.received"} and all(intake.values())
    assert "case.routed" in router and "referral.received" not in router and all(router.values())
    assert "case.offer.made" in notify and not {"case.routed", "referral.received"} & set(notify)
