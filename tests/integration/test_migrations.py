"""Schema migrations, on SQLite and PostgreSQL: the revisions build exactly the models; a database of
the previous release, with referrals in it, is upgraded and its data stays readable (encrypted fields
included); replicas and services migrating at once do not race; on PostgreSQL each service keeps its
tables in its own schema even when all four share one database."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import func, select

from services.intake.app import SAMPLE_CLIENT, create_app
from services.directory.store import ProviderKey
from services.intake.store import ApiClient, Referral
from services.launcher import SERVICES, NatsServer
from shared.audit import AuditRecord
from shared.auth import hash_api_key
from shared.crypto import FieldCipher
from shared.db import Database
from shared.migrations import MigrationError, ServiceMigrations, baseline, current, downgrade, drift, head, upgrade
from shared.outbox import OutboxMessage
from tests.harness import running, url_for
from tests.integration.conftest import EHR, intake_settings


def migrations_of(service: str) -> ServiceMigrations:
    return importlib.import_module(f"services.{service}.migrations").MIGRATIONS  # type: ignore[no-any-return]


async def tables_by_schema(database_url: str) -> dict[str, set[str]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            ))
            found: dict[str, set[str]] = {}
            for schema, table in rows:
                found.setdefault(schema, set()).add(table)
            return found
    finally:
        await engine.dispose()


async def test_migrations_on_an_empty_database_build_exactly_each_services_models(database_url: str):
    for service in SERVICES:
        migrations = migrations_of(service)
        db = migrations.database(url_for(database_url, service))
        try:
            await upgrade(db, migrations)
            assert await current(db, migrations) == head(migrations)
            assert await drift(db, migrations) == [], service
        finally:
            await db.dispose()


async def test_services_and_replicas_migrating_at_once_each_get_their_own_tables(database_url: str):
    """Two replicas of each of the four services start together on one database URL, three times
    over (the later rounds after a downgrade to base): no race, and each service's tables only in
    its own schema."""
    expected = {
        service: {model.__tablename__ for model in migrations_of(service).tables}  # type: ignore[misc]
        | {"processed_event", "outbox", migrations_of(service).version_table}
        for service in SERVICES
    }
    for _round in range(3):
        replicas = [(migrations_of(s), migrations_of(s).database(url_for(database_url, s))) for s in SERVICES * 2]
        try:
            await asyncio.gather(*(upgrade(db, migrations) for migrations, db in replicas))
            for migrations, db in replicas:
                assert await current(db, migrations) == head(migrations)
        finally:
            for _, db in replicas:
                await db.dispose()
        if database_url.startswith("postgresql"):
            assert await tables_by_schema(database_url) == expected  # nothing in public, nothing shared
        for service in SERVICES:
            migrations = migrations_of(service)
            db = migrations.database(url_for(database_url, service))
            try:
                await downgrade(db, migrations, "base")
                assert await current(db, migrations) is None
            finally:
                await db.dispose()


async def test_replicas_started_together_as_processes_migrate_one_after_another(database_url: str):
    """Three intake processes migrate one fresh database at once (as replicas starting together do):
    each waits for the lock, the first creates the tables, the others find them made."""
    pathways = str(Path(sys.executable).with_name("pathways"))
    url = url_for(database_url, "intake")
    replicas = [
        await asyncio.create_subprocess_exec(
            pathways, "db", "upgrade", "--service", "intake", "--database-url", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    outputs = [(await replica.communicate())[0].decode() for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0, 0, 0], outputs
    migrations = migrations_of("intake")
    db = migrations.database(url)
    try:
        assert await current(db, migrations) == head(migrations)
        assert await drift(db, migrations) == []
    finally:
        await db.dispose()


async def write_previous_release(database_url: str, *, versioned: bool, cipher: FieldCipher) -> dict[str, object]:
    """Intake's database as release 0.1 left it, holding a referral with encrypted identifying data.

    ``versioned``: at the baseline revision. Otherwise made by 0.1's ``create_all`` before migrations
    existed: no version table, and on PostgreSQL in schema ``public``."""
    migrations = migrations_of("intake")
    base, frozen = baseline(migrations)
    db = migrations.database(database_url) if versioned else Database(database_url, [])
    referral_id = uuid4()
    identifying = {"name": "Test Person (synthetic)", "phone": "07700 900000", "postcode": "LS7 3AB"}
    now = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    try:
        if versioned:
            await upgrade(db, migrations, base)
        else:
            async with db.engine.begin() as conn:
                await conn.run_sync(frozen.create_all)
        async with db.engine.begin() as conn:
            tables = frozen.tables
            await conn.execute(tables["api_client"].insert().values(
                id=SAMPLE_CLIENT["id"], name=SAMPLE_CLIENT["name"], key_hash=hash_api_key(SAMPLE_CLIENT["api_key"]),
                ods_codes=SAMPLE_CLIENT["ods_codes"], active=True,
            ))
            await conn.execute(tables["referral"].insert().values(
                id=referral_id, client_id=SAMPLE_CLIENT["id"], bundle_identifier="urn:test|bundle-1",
                service_request_identifier="urn:test|sr-1", request_hash="0" * 64, referrer_ods="Y00001",
                summary={"risk_band": "standard", "postcode_sector": "LS7 3"}, consent={"state": "granted"},
                identifying=cipher.encrypt(json.dumps(identifying).encode(), aad=referral_id.bytes),
                task_status="accepted", business_status="offered", business_status_code="offered",
                task_outputs=[], status_reason=None, created_at=now, last_updated=now,
            ))
            await conn.execute(tables["audit_record"].insert().values(
                id=uuid4(), at=now, actor_kind="service", actor_id="notify", action="release-identifying-data",
                case_id=referral_id, detail="to organisation sample-org",
            ))
            await conn.execute(tables["outbox"].insert().values(
                event_id=uuid4(), subject="referral.received", payload="{}", headers="{}", created_at=now,
                published_at=now,
            ))
    finally:
        await db.dispose()
    return {"referral_id": referral_id, "identifying": identifying}


@pytest.mark.parametrize("versioned", [False, True], ids=["made-by-create_all", "at-baseline-revision"])
async def test_a_previous_release_database_with_referrals_is_upgraded_and_stays_readable(
    nats_server: NatsServer, database_url: str, encryption_keys: str, versioned: bool
):
    cipher = FieldCipher.from_config(encryption_keys, "k1")
    before = await write_previous_release(database_url, versioned=versioned, cipher=cipher)
    referral_id = before["referral_id"]

    # Intake starts on it as after an upgrade: it migrates, then serves the old referral.
    app = create_app(intake_settings(nats_server.url, database_url, encryption_keys))
    async with running(app) as intake:
        task = await intake.get(f"/fhir/Task/{referral_id}", headers=EHR)
        assert task.status_code == 200, task.text
        assert task.json()["status"] == "accepted"
        db: Database = app.state.runtime.db
        async with db.session() as session:
            client = await session.get(ApiClient, SAMPLE_CLIENT["id"])
            assert client is not None and client.usable() and client.ods_codes == sorted(SAMPLE_CLIENT["ods_codes"])
            referral = await session.get(Referral, referral_id)
            assert referral is not None and referral.created_at == datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
            assert json.loads(cipher.decrypt(referral.identifying, aad=referral_id.bytes)) == before["identifying"]
            assert (await session.exec(select(func.count()).select_from(AuditRecord))).one() == 1
            assert (await session.exec(select(func.count()).select_from(OutboxMessage))).one() == 1
        migrations = migrations_of("intake")
        assert await current(db, migrations) == head(migrations)
        assert await drift(db, migrations) == []
    if database_url.startswith("postgresql"):
        schemas = await tables_by_schema(database_url)
        assert "public" not in schemas and "referral" in schemas["intake"]


async def test_an_organisations_release_0_1_key_becomes_its_default_provider_key(database_url: str):
    migrations = migrations_of("directory")
    base, frozen = baseline(migrations)
    db = migrations.database(database_url)
    organisation = frozen.tables["organisation"]
    values = {column.name: "" for column in organisation.columns if not column.nullable}
    values.update(id="org-sample", name="Sample refuge (sample)", by_and_for=[], by_and_for_other=[],
                  signing_secrets=[], updated_at=datetime(2026, 11, 1, tzinfo=UTC))
    try:
        await upgrade(db, migrations, base)
        async with db.engine.begin() as conn:
            await conn.execute(organisation.insert().values(**values, api_key_hash=hash_api_key("pw_sample_key")))
        await upgrade(db, migrations)
        async with db.session() as session:
            (key,) = (await session.exec(select(ProviderKey))).all()
        assert (key.organisation_id, key.name, key.key_hash) == ("org-sample", "default", hash_api_key("pw_sample_key"))
        assert key.usable()
        assert await drift(db, migrations) == []
        await downgrade(db, migrations, base)  # and back: the previous release finds its key again
        async with db.engine.connect() as conn:
            restored = (await conn.execute(sa.select(organisation.c.api_key_hash))).scalar_one()
        assert restored == hash_api_key("pw_sample_key")
    finally:
        await db.dispose()


async def test_tables_unlike_the_previous_release_stop_the_start_up_and_change_nothing(database_url: str):
    """A database with intake's tables but not as any release made them is not migrated by guesswork."""
    migrations = migrations_of("intake")
    _, frozen = baseline(migrations)
    frozen.tables["referral"].append_column(sa.Column("surprise", sa.Integer(), nullable=True))
    db = migrations.database(database_url)
    try:
        async with db.engine.begin() as conn:
            if db.schema:
                await conn.execute(sa.text(f'CREATE SCHEMA "{db.schema}"'))
            await conn.run_sync(lambda sync: frozen.create_all(sync, checkfirst=False))
        with pytest.raises(MigrationError, match=r"cannot be adopted.*referral\.surprise"):
            await upgrade(db, migrations)
        assert await current(db, migrations) is None
    finally:
        await db.dispose()


# Schema public is PostgreSQL's.
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_one_database_shared_by_release_0_1_services_is_not_split_by_guesswork(database_url: str):
    """Release 0.1 given one PostgreSQL URL mixed every service's inbox, outbox and audit tables in
    ``public``: intake refuses to start, naming what it found, rather than serving half its data."""
    legacy = Database(database_url, [])
    try:
        async with legacy.engine.begin() as conn:
            for service in ("intake", "router"):
                await conn.run_sync(baseline(migrations_of(service))[1].create_all)
    finally:
        await legacy.dispose()
    migrations = migrations_of("intake")
    db = migrations.database(database_url)
    try:
        with pytest.raises(MigrationError, match="beside others' .*routed_case"):
            await upgrade(db, migrations)
    finally:
        await db.dispose()
    assert "referral" in (await tables_by_schema(database_url))["public"]


async def test_a_database_migrated_by_a_newer_release_is_not_touched(database_url: str):
    migrations = migrations_of("router")
    db = migrations.database(database_url)
    try:
        await upgrade(db, migrations)
        async with db.engine.begin() as conn:
            await conn.execute(sa.text(f"UPDATE {migrations.version_table} SET version_num = '0999'"))
        with pytest.raises(MigrationError, match="at revision 0999, which this release does not know"):
            await upgrade(db, migrations)
        assert await current(db, migrations) == "0999"
    finally:
        await db.dispose()


def test_pathways_db_shows_upgrades_and_downgrades_each_services_development_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With no DATABASE_URL the commands work on the development files under .data/, as `make run` does."""
    from typer.testing import CliRunner

    from services.cli import app as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    runner = CliRunner()
    before = runner.invoke(cli, ["db", "current"])
    assert before.exit_code == 0 and before.output.count("not migrated (behind: head is 000") == 4, before.output
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert sorted(p.name for p in (tmp_path / ".data").glob("*.db")) == [f"{s}.db" for s in sorted(SERVICES)]
    assert runner.invoke(cli, ["db", "current"]).output.count("(up to date)") == 4
    down = runner.invoke(cli, ["db", "downgrade", "base", "--service", "router"])
    assert down.exit_code == 0 and "router     at base (no tables)" in down.output, down.output
    after = runner.invoke(cli, ["db", "current"]).output
    assert "router     not migrated" in after and after.count("(up to date)") == 3
    unknown = runner.invoke(cli, ["db", "current", "--service", "billing"])
    assert unknown.exit_code == 2 and "unknown service(s): billing" in unknown.output


async def test_a_later_revision_can_rebuild_a_table_that_others_reference(database_url: str, tmp_path: Path):
    """What a later revision will do on SQLite (batch mode: copy, drop, rename) works on a table with
    rows pointing at it, and the rows and the foreign-key checks survive."""
    notify = migrations_of("notify")
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_baseline.py").write_text((notify.versions / "0001_baseline.py").read_text())
    (versions / "0002_longer_reason.py").write_text(
        'import sqlalchemy as sa\nfrom alembic import op\n\nrevision = "0002"\ndown_revision = "0001"\n\n\n'
        "def upgrade() -> None:\n"
        '    with op.batch_alter_table("escalation") as batch:\n'
        '        batch.alter_column("reason", type_=sa.String(length=600), existing_nullable=False)\n\n\n'
        "def downgrade() -> None:\n    pass\n"
    )
    migrations = ServiceMigrations("notify", tables=notify.tables, versions=versions)
    db = migrations.database(database_url)
    _, frozen = baseline(migrations)
    escalation_id, now = uuid4(), datetime(2026, 11, 1, tzinfo=UTC)
    try:
        await upgrade(db, migrations, "0001")
        async with db.engine.begin() as conn:
            await conn.execute(frozen.tables["escalation"].insert().values(
                id=escalation_id, case_id=uuid4(), reason="no local service", status="open", created_at=now,
                updated_at=now,
            ))
            await conn.execute(frozen.tables["escalation_note"].insert().values(
                id=uuid4(), escalation_id=escalation_id, at=now, author="ops-1", text="called the helpline",
            ))
        await upgrade(db, migrations)
        assert await current(db, migrations) == "0002"
        async with db.engine.begin() as conn:
            notes = frozen.tables["escalation_note"]
            assert (await conn.execute(sa.select(notes.c.escalation_id))).scalars().all() == [escalation_id]
        with pytest.raises(sa.exc.IntegrityError):  # references are still enforced afterwards
            async with db.engine.begin() as conn:
                await conn.execute(notes.insert().values(
                    id=uuid4(), escalation_id=uuid4(), at=now, author="ops-1", text="orphan",
                ))
    finally:
        await db.dispose()
