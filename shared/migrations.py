"""Schema migrations (Alembic) for each service's own tables, run at start-up and by ``pathways db``.

Layout: each service keeps its revisions in ``services/<name>/migrations/`` (the folder's
``__init__.py`` says which tables the service owns); every service shares one Alembic environment,
``shared/migration_env/`` (``env.py`` and the template for new revisions). Revision 0001 of each
service is the baseline: exactly the tables release 0.1 created with ``create_all``.

- Ownership: on PostgreSQL each service lives in its own schema, named after it, even when one
  ``DATABASE_URL`` is given for all four (``Database`` puts the schema on the connection's
  ``search_path``); each service has its own version table, ``alembic_version_<name>``.
- Serialised: the upgrade runs in one transaction that first takes a lock, so replicas starting
  together migrate one after the other — ``pg_advisory_xact_lock`` on PostgreSQL (released at commit),
  ``BEGIN EXCLUSIVE`` on SQLite (``shared.db.SQLITE_MIGRATION_OPTIONS``). The loser of the race finds the work done.
- Adoption: a database made by release 0.1 (tables, no version table) is stamped at the baseline when
  its tables are exactly the baseline's, then upgraded; tables that differ stop the start-up with the
  differences named, rather than migrating something unknown.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.util import CommandError
from alembic.migration import MigrationContext
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from shared.db import SQLITE_MIGRATION_OPTIONS, Database, UTCDateTime
from shared.migration_baseline import SHARED_TABLES

log = logging.getLogger(__name__)
T = TypeVar("T")

ENVIRONMENT = Path(__file__).with_name("migration_env")
# Arbitrary but fixed: the first half of every Pathways migration lock key (the second is the service).
LOCK_CLASS = 0x50617468  # "Path"


class MigrationError(RuntimeError):
    """The database cannot be brought to the code's schema without a person deciding how."""


@dataclass(frozen=True)
class ServiceMigrations:
    """One service's schema: the tables it owns (its models) and its Alembic revisions."""

    service: str
    tables: Sequence[type[SQLModel]]
    versions: Path

    @property
    def version_table(self) -> str:
        return f"alembic_version_{self.service}"

    def database(self, url: str, **kwargs: Any) -> Database:
        """The service's database: its tables, in its own schema on PostgreSQL."""
        return Database(url, self.tables, schema=self.service, **kwargs)

    def config(self, connection: Connection, target_metadata: sa.MetaData) -> Config:
        cfg = self._config()
        cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
        cfg.attributes.update(
            connection=connection, target_metadata=target_metadata, version_table=self.version_table
        )
        return cfg

    def _config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(ENVIRONMENT))
        cfg.set_main_option("version_locations", str(self.versions))
        cfg.set_main_option("path_separator", "os")
        return cfg

    def scripts(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(self._config())


def models(db: Database) -> sa.MetaData:
    """The tables of this service only (the process may have imported every service's models)."""
    metadata = sa.MetaData()
    for table in db.tables:
        table.to_metadata(metadata)
    return metadata


def run_environment(context: EnvironmentContext) -> None:
    """The body of ``env.py``: migrate on the connection the runner opened and locked."""
    attributes = context.config.attributes
    connection = attributes.get("connection")
    if connection is None:
        raise MigrationError("Pathways migrations run through shared.migrations (pathways db …), not bare alembic")
    context.configure(
        connection=connection,
        target_metadata=attributes["target_metadata"],
        version_table=attributes["version_table"],
        render_as_batch=True,  # SQLite alters tables by copying them; batch mode writes that for us
        render_item=_render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _render_item(type_: str, obj: Any, _autogen: Any) -> str | bool:
    """New revisions use plain SQLAlchemy types, so a revision never changes when the models do."""
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and type(obj).__module__.startswith("sqlalchemy.dialects."):
        # Downgrades are rendered from the scratch database's reflected (SQLite) types.
        return f"sa.{obj.as_generic()!r}"
    return False


async def upgrade(db: Database, migrations: ServiceMigrations, revision: str = "head") -> None:
    """Bring the service's tables to ``revision`` (adopting a release-0.1 database first)."""

    def work(conn: Connection) -> None:
        cfg = migrations.config(conn, models(db))
        _adopt_if_unversioned(conn, migrations, cfg)
        before = _current(conn, migrations)
        if before is not None and not _known(migrations, before):
            raise MigrationError(
                f"{migrations.service}: the database is at revision {before}, which this release does not know "
                "(a newer release migrated it): downgrade it with that release's `pathways db downgrade` first"
            )
        command.upgrade(cfg, revision)
        after = _current(conn, migrations)
        if before != after:
            log.info("%s: database schema %s -> %s", migrations.service, before or "empty", after)

    await _locked(db, migrations, work)


async def downgrade(db: Database, migrations: ServiceMigrations, revision: str) -> None:
    """Take the service's tables back to ``revision`` (``base`` drops them, with their data)."""
    await _locked(db, migrations, lambda conn: command.downgrade(migrations.config(conn, models(db)), revision))


async def current(db: Database, migrations: ServiceMigrations) -> str | None:
    """The revision the service's database is at (``None``: never migrated)."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda sync: _current(sync, migrations))


def head(migrations: ServiceMigrations) -> str | None:
    return migrations.scripts().get_current_head()


async def drift(db: Database, migrations: ServiceMigrations) -> list[Any]:
    """Differences between the database and the service's models (empty when the migrations match them)."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda sync: _differences(sync, models(db), migrations))


async def new_revision(
    db: Database, migrations: ServiceMigrations, message: str, *, autogenerate: bool = True
) -> Path:
    """Write the next revision file (``0002_<slug>.py``, …) into the service's migrations folder.

    With ``autogenerate`` the body is what changes ``db`` (brought to head first) into the models;
    read it and edit before committing, as Alembic's own autogenerate asks.
    """
    await upgrade(db, migrations)
    number = len(list(migrations.scripts().walk_revisions())) + 1

    def work(conn: Connection) -> Path:
        cfg = migrations.config(conn, models(db))
        script = command.revision(
            cfg, message=message, autogenerate=autogenerate, rev_id=f"{number:04d}",
            version_path=str(migrations.versions),
        )
        assert script is not None and not isinstance(script, list)
        return Path(script.path)

    return await _locked(db, migrations, work)


# Alembic's commands work through module-level proxies (``alembic.context``, ``alembic.op``), so two
# migrations interleaving on one event loop (several services in one test process) would trip over
# each other: one at a time per loop here, one at a time per database through the database's lock.
_loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def _locked(db: Database, migrations: ServiceMigrations, work: Callable[[Connection], T]) -> T:
    lock = _loop_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    sqlite = db.backend == "sqlite"
    # SQLite's way to alter a table (batch mode: copy, drop, rename) cannot drop a table that others
    # reference (escalation, fhir_subscription) while foreign keys are enforced, and the pragma only
    # changes outside a transaction: the connection's BEGIN hook turns them off and begins EXCLUSIVE (a
    # second process waits, then sees the finished work); they are checked before the commit, and the
    # connection is discarded afterwards rather than returned to the pool with them off.
    engine = db.engine.execution_options(**SQLITE_MIGRATION_OPTIONS) if sqlite else db.engine
    async with lock, engine.connect() as conn:
        try:
            await conn.run_sync(lambda sync: _lock(sync, db, migrations))
            result = await conn.run_sync(work)
            if sqlite and (await conn.exec_driver_sql("PRAGMA foreign_key_check")).first() is not None:
                raise MigrationError(f"{migrations.service}: the migration left rows whose references are broken")
            await conn.commit()
            return result
        except BaseException:
            await conn.rollback()
            raise
        finally:
            if sqlite:
                await conn.invalidate()


def _lock(conn: Connection, db: Database, migrations: ServiceMigrations) -> None:
    """Serialise migrations of one service's tables: the first statement of the migration transaction."""
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(migrations.service.encode()) & 0x7FFFFFFF
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:cls, :key)"), {"cls": LOCK_CLASS, "key": key})
        if db.schema:
            found = conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": db.schema})
            if found.first() is None:
                # Only when missing: a role without CREATE on the database can use a schema a DBA made.
                conn.execute(sa.text(f'CREATE SCHEMA "{db.schema}"'))
            # The dialect read current_schema() on its first connection, perhaps before the schema existed.
            conn.dialect.default_schema_name = db.schema


def _known(migrations: ServiceMigrations, revision: str) -> bool:
    try:
        return migrations.scripts().get_revision(revision) is not None
    except CommandError:
        return False


def _current(conn: Connection, migrations: ServiceMigrations) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table": migrations.version_table})
    return context.get_current_revision()


def baseline(migrations: ServiceMigrations) -> tuple[str, sa.MetaData]:
    """The service's baseline revision and its frozen tables (release 0.1's ``create_all``)."""
    scripts = migrations.scripts()
    (base,) = scripts.get_bases()
    module = scripts.get_revision(base).module  # type: ignore[union-attr]
    return base, module.baseline_metadata()


def _differences(
    conn: Connection, metadata: sa.MetaData, migrations: ServiceMigrations, *, only_these: bool = False
) -> list[Any]:
    """``compare_metadata``; ``only_these`` looks at the metadata's tables only (when adopting, other
    tables in the database are not for this service to judge)."""
    opts: dict[str, Any] = {"compare_type": True, "version_table": migrations.version_table}
    if only_these:
        opts["include_name"] = lambda name, kind, _parent: kind != "table" or name in metadata.tables
    return list(compare_metadata(MigrationContext.configure(conn, opts=opts), metadata))


def _adopt_if_unversioned(conn: Connection, migrations: ServiceMigrations, cfg: Config) -> None:
    inspector = sa.inspect(conn)
    if inspector.has_table(migrations.version_table):
        return
    base, frozen = baseline(migrations)
    if not set(inspector.get_table_names()) & set(frozen.tables):
        if not _move_from_public(conn, migrations, frozen):
            return  # an empty database: the upgrade creates everything
    differences = _differences(conn, frozen, migrations, only_these=True)
    if differences:
        raise MigrationError(
            f"{migrations.service}: the database has tables but no version table, and they are not release "
            f"0.1's, so they cannot be adopted ({_describe(differences)}). On SQLite each service needs a "
            "database file of its own."
        )
    command.stamp(cfg, base)
    log.info("%s: adopted a database made before migrations (stamped %s)", migrations.service, base)


def _move_from_public(conn: Connection, migrations: ServiceMigrations, frozen: sa.MetaData) -> bool:
    """PostgreSQL: release 0.1 kept its tables in ``public``; move this service's into its own schema.

    Only when ``public`` holds this service's tables and nothing else: release 0.1 given one database
    for all four services mixed their inbox, outbox and audit tables, which no rule can split safely.
    """
    schema = conn.dialect.default_schema_name
    if conn.dialect.name != "postgresql" or schema in (None, "public"):
        return False
    in_public = {name for name in sa.inspect(conn).get_table_names(schema="public")
                 if not name.startswith("alembic_version")}
    ours = set(frozen.tables)
    if not (ours - set(SHARED_TABLES)) & in_public:
        return False
    if in_public != ours:
        others, missing = sorted(in_public - ours), sorted(ours - in_public)
        raise MigrationError(
            f"{migrations.service}: schema public holds this service's release-0.1 tables"
            + (f" beside others' ({', '.join(others)})" if others else "")
            + (f" without {', '.join(missing)}" if missing else "")
            + f"; move them into schema {schema} by hand (docs/operations.md, 'Upgrading (migrations)')"
        )
    for name in sorted(ours):
        conn.execute(sa.text(f'ALTER TABLE public."{name}" SET SCHEMA "{schema}"'))
    log.info("%s: moved release 0.1's tables from schema public into schema %s", migrations.service, schema)
    return True


def _describe(differences: Sequence[Any]) -> str:
    """What differs, by the names of tables, columns and indexes only: never a value."""
    parts = []
    for diff in differences:
        change = diff[0] if isinstance(diff, list) else diff
        names = [part if isinstance(part, str) else getattr(part, "name", None) for part in change[1:4]]
        parts.append(f"{change[0]} {'.'.join(name for name in names if name)}")
    return "; ".join(parts)
