"""The ``pathways`` command: run the system, and the operations ops need by hand."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from services import cli_audit, cli_credentials
from services.launcher import DATA_DIR_DEFAULT, DEFAULT_PORTS, SERVICES, System, background_nice

app = typer.Typer(help="Pathways: referral routes from NHS settings to specialist domestic abuse services.",
                  no_args_is_help=True)
dlq = typer.Typer(help="The dead-letter stream: messages a consumer gave up on.")
app.add_typer(dlq, name="dlq")
keys = typer.Typer(help="Encryption keys for the identifying data intake stores.")
app.add_typer(keys, name="keys")
gazetteer = typer.Typer(help="The directory's postcode gazetteer (ONS Postcode Directory / NSPL).")
app.add_typer(gazetteer, name="gazetteer")
app.add_typer(cli_credentials.clients, name="clients")
app.add_typer(cli_credentials.providers, name="providers")
app.add_typer(cli_credentials.ops_users, name="ops-users")
app.add_typer(cli_audit.audit, name="audit")
db = typer.Typer(help="Each service's tables: schema migrations (Alembic), per service, in its own schema.")
app.add_typer(db, name="db")

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from shared.db import Database
    from shared.migrations import ServiceMigrations
    from shared.settings import ServiceSettings

    MigrationAction = Callable[[Database, ServiceMigrations], Awaitable[str]]

EXAMPLE = "examples/gp-referral.json"


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="Where NATS, SQLite, logs and dev secrets live")] = DATA_DIR_DEFAULT,
    sample: Annotated[bool, typer.Option(
        help="Load the sample directory, EHR client and ops user (--no-sample: start empty, for a real area)")] = True,
) -> None:
    """Start NATS (unless NATS_URL is set) and the four services on SQLite (unless DATABASE_URL is set)."""
    try:
        nice = background_nice()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="PATHWAYS_BACKGROUND_NICE") from None
    system = System(
        data_dir=data_dir.resolve(),
        ports=configured_ports(),
        nats_url=os.environ.get("NATS_URL") or None,
        database_url=os.environ.get("DATABASE_URL") or None,
        sample=sample,
        background_nice=nice,
    )
    stop = {"requested": False}

    def request_stop(signum: int, _frame: object) -> None:
        stop["requested"] = True

    # SIGHUP too: closing the terminal must stop the services (they run in their own sessions, so the
    # terminal's hang-up reaches only this process) rather than leave them holding their ports.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)
    try:
        say("Starting Pathways…")
        system.start()
        say(banner(system))
        while not stop["requested"]:
            exited = system.exited()
            if exited:
                say(f"A service stopped unexpectedly: {exited}; see {system.log_dir}", err=True)
                raise typer.Exit(1)
            time.sleep(0.5)
    finally:
        say("Stopping Pathways…")
        system.stop()
        say("Stopped.")


def configured_ports() -> dict[str, int]:
    """Each port can be moved with the variable the service itself reads (INTAKE_PORT, …)."""
    return {name: int(os.environ.get(f"{name.upper()}_PORT", port)) for name, port in DEFAULT_PORTS.items()}


def say(text: str, *, err: bool = False) -> None:
    """Print, unless the terminal is gone (after a hang-up): stopping must never fail on output."""
    try:
        typer.echo(text, err=err)
    except OSError:
        # Later writes (and the flush at exit) would fail the same way.
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def banner(system: System) -> str:
    from services.status import without_credentials

    # A NATS_URL of the environment may carry a user and password: the banner shows where, never who.
    nats = without_credentials(system.nats_url or (system.nats.url if system.nats else ""))
    env = system.environment()
    guide = sample_guide(system) if env["DIRECTORY_LOAD_SAMPLE"].lower() == "true" else empty_guide(system)
    return f"""
Pathways is running (logs in {system.log_dir}).

  NATS       {nats}{'  (bundled, JetStream store in ' + str(system.data_dir / 'nats') + ')' if system.nats else ''}
  intake     {system.url('intake')}      FHIR API for EHR systems   {system.url('intake')}/docs
  router     {system.url('router')}      routing decisions          {system.url('router')}/docs
  directory  {system.url('directory')}      providers and coverage     {system.url('directory')}/docs
  notify     {system.url('notify')}      provider offers, handoffs  {system.url('notify')}/docs

{guide}
Readiness, consumer lag, dead letters and outboxes at a glance: pathways status (metrics at /metrics)

Press Ctrl-C to stop.
"""


def sample_guide(system: System) -> str:
    return f"""Post the example referral as an EHR would (sample client key):

  curl -s -X POST {system.url('intake')}/fhir/Bundle \\
    -H 'Content-Type: application/fhir+json' -H 'Authorization: Bearer pw_sample_ehr_client' \\
    --data @{EXAMPLE}

List the sample provider's offers, then accept one and read its handoff:

  curl -s {system.url('notify')}/offers -H 'Authorization: Bearer pw_sample_aire_valley_da'
  curl -s -X POST {system.url('notify')}/offers/OFFER_ID/accept -H 'Authorization: Bearer pw_sample_aire_valley_da'
  curl -s {system.url('notify')}/offers/OFFER_ID/handoff -H 'Authorization: Bearer pw_sample_aire_valley_da'

Or in a browser, the provider inbox: {system.url('notify')}/inbox (sign in with pw_sample_aire_valley_da)

Follow the referral's Task (id from the first answer):

  curl -s {system.url('intake')}/fhir/Task/TASK_ID -H 'Authorization: Bearer pw_sample_ehr_client'

Any postcode in England resolves (the sample directory covers West Yorkshire, North East London, and
Cornwall and the Isles of Scilly); which gazetteer is in force:

  curl -s '{system.url('directory')}/areas/E1%206AN'
  curl -s {system.url('directory')}/gazetteer

Ops endpoints take the development ops key: {system.environment()['PATHWAYS_OPS_KEY']}
"""


def empty_guide(system: System) -> str:
    return f"""No sample data: the directory, EHR clients and ops users are yours to add (README: "Onboarding an area").

  pathways ops-users bootstrap YOUR.HANDLE --database-url sqlite+aiosqlite:///{system.data_dir / 'directory.db'}
  export PATHWAYS_OPS_KEY=…   # the api_key it printed
  curl -s -X POST {system.url('directory')}/hsds -H "Authorization: Bearer $PATHWAYS_OPS_KEY" \\
    -H 'Content-Type: application/json' --data @your-directory.json
  pathways clients create YOUR-EHR --name '…' --ods YOUR-ODS-CODE
  pathways providers keys create ORGANISATION-ID case-system
"""


# The CA that signed a tls:// NATS's certificate (the production overlay sets NATS_CA_FILE in the pods).
NatsCaFileOption = Annotated[str | None, typer.Option(envvar="NATS_CA_FILE", help="CA of a tls:// NATS")]


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object, for scripts")] = False,
    nats_url: Annotated[str, typer.Option(envvar="NATS_URL")] = f"nats://127.0.0.1:{DEFAULT_PORTS['nats']}",
    host: Annotated[str, typer.Option(help="Where the services listen (ports from INTAKE_PORT, …)")] = "127.0.0.1",
    timeout: float = 5.0,
    nats_ca_file: NatsCaFileOption = None,
) -> None:
    """Readiness, outbox depth, stream and consumer lag and dead letters of a running system.

    Exits 1 when a service is not ready or NATS cannot be reached."""
    import json

    from rich.console import Console

    from services.status import gather, render

    ports = configured_ports()
    services = {name: f"http://{host}:{ports[name]}" for name in SERVICES}
    found = asyncio.run(gather(services, nats_url, timeout=timeout, nats_ca_file=nats_ca_file))
    if as_json:
        typer.echo(json.dumps(found.as_json(), indent=2))
    else:
        render(found, Console())
    if not found.healthy:
        raise typer.Exit(1)


@dlq.command("replay")
def dlq_replay(
    nats_url: Annotated[str, typer.Option(envvar="NATS_URL")] = f"nats://127.0.0.1:{DEFAULT_PORTS['nats']}",
    limit: int = 1000,
    nats_ca_file: NatsCaFileOption = None,
) -> None:
    """Republish dead-lettered messages to their original subjects."""
    from shared.bus import Bus

    async def replay() -> int:
        bus = Bus(nats_url, name="pathways-cli", tls_ca_file=nats_ca_file)
        await bus.start()
        try:
            await bus.wait_ready(timeout=10)
            return await bus.replay_dead_letters(limit=limit)
        finally:
            await bus.close()

    typer.echo(f"replayed {asyncio.run(replay())} message(s)")


@keys.command("generate")
def keys_generate(key_id: Annotated[str, typer.Argument(help="id for the new key, e.g. 2026-11")]) -> None:
    """Print a new AES-256 key as 'id:base64', to append to INTAKE_ENCRYPTION_KEYS."""
    from shared.crypto import FieldCipher

    if not key_id or ":" in key_id or "," in key_id:
        raise typer.BadParameter("a key id is non-empty and holds no ':' or ','")
    typer.echo(f"{key_id}:{FieldCipher.new_key()}")


@keys.command("rotate")
def keys_rotate(
    secrets_file: Annotated[
        Path | None, typer.Option(help="read INTAKE_* keys and DATABASE_URL from this file (e.g. .data/secrets.env)")
    ] = None,
    batch: int = 200,
) -> None:
    """Re-encrypt every referral's identifying data under INTAKE_ACTIVE_KEY_ID.

    Old keys must still be in INTAKE_ENCRYPTION_KEYS: they decrypt what is being rotated. Safe to run
    while intake is serving, and again after an interruption.
    """
    from services.intake.keys import rotate_identifying
    from services.intake.migrations import MIGRATIONS
    from services.intake.settings import IntakeSettings
    from shared.crypto import FieldCipher, KeyRingError

    if secrets_file is not None:
        for line in secrets_file.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip() not in os.environ:
                os.environ[name.strip()] = value.strip()
    settings = IntakeSettings()
    try:
        cipher = FieldCipher.from_config(settings.encryption_keys.get_secret_value(), settings.active_key_id)
    except KeyRingError as exc:
        raise typer.BadParameter(str(exc), param_hint="INTAKE_ENCRYPTION_KEYS / INTAKE_ACTIVE_KEY_ID") from None

    async def rotate() -> tuple[int, int]:
        db = MIGRATIONS.database(settings.resolved_database_url())
        try:
            result = await rotate_identifying(db, cipher, batch=batch)
            return result.rotated, result.skipped
        finally:
            await db.dispose()

    try:
        rotated, skipped = asyncio.run(rotate())
    except KeyRingError as exc:
        # Names the missing key id, never a value.
        typer.echo(f"cannot rotate: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"re-encrypted {rotated} referral(s) under key '{cipher.active_key_id}'"
               + (f"; {skipped} changed meanwhile (run again)" if skipped else ""))


@gazetteer.command("import")
def gazetteer_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="ONSPD or NSPL CSV, as published")],
    database_url: Annotated[
        str, typer.Option(envvar="DATABASE_URL", help="The directory's database (default: .data/directory.db)")
    ] = "",
) -> None:
    """Load postcodes, districts (with each local authority's share) and LAD → ICB from an ONS file.

    The districts in the file replace what the gazetteer held for them; a running directory publishes
    ``directory.changed`` from its outbox."""
    from services.directory.gazetteer import GazetteerFormatError, import_onspd
    from services.directory.migrations import MIGRATIONS
    from services.directory.settings import DirectorySettings
    from shared.migrations import upgrade

    settings = DirectorySettings(database_url=database_url) if database_url else DirectorySettings()

    async def load() -> str:
        db = MIGRATIONS.database(settings.resolved_database_url())
        try:
            await upgrade(db, MIGRATIONS)
            summary = await import_onspd(db, file)
        finally:
            await db.dispose()
        return (f"imported {summary.postcodes} postcodes in {summary.districts} districts "
                f"({summary.local_authorities} local authorities)")

    try:
        typer.echo(asyncio.run(load()))
    except GazetteerFormatError as exc:
        typer.echo(f"{file.name}: {exc}", err=True)
        raise typer.Exit(2) from exc


ServiceOption = Annotated[
    list[str] | None,
    typer.Option("--service", "-s", help="intake, router, directory or notify (repeatable; default: all four)"),
]
DatabaseUrlOption = Annotated[
    str,
    typer.Option(envvar="DATABASE_URL", help="Default: each service's own (DATABASE_URL, else .data/<service>.db)"),
]


def _service_schema(name: str, database_url: str) -> tuple[ServiceSettings, ServiceMigrations]:
    import importlib

    settings_class = getattr(importlib.import_module(f"services.{name}.settings"), f"{name.capitalize()}Settings")
    settings = settings_class(database_url=database_url) if database_url else settings_class()
    return settings, importlib.import_module(f"services.{name}.migrations").MIGRATIONS


def _for_each_service(services: list[str] | None, database_url: str, action: MigrationAction) -> None:
    from services.launcher import SERVICES
    from shared.migrations import MigrationError

    chosen = services or list(SERVICES)
    unknown = sorted(set(chosen) - set(SERVICES))
    if unknown:
        raise typer.BadParameter(f"unknown service(s): {', '.join(unknown)}", param_hint="--service")

    async def run() -> None:
        for name in chosen:
            settings, migrations = _service_schema(name, database_url)
            database = migrations.database(settings.resolved_database_url())
            try:
                typer.echo(f"{name:<10} {await action(database, migrations)}")
            finally:
                await database.dispose()

    try:
        asyncio.run(run())
    except MigrationError as exc:
        typer.echo(f"cannot migrate: {exc}", err=True)
        raise typer.Exit(1) from None


@db.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    service: ServiceOption = None,
    database_url: DatabaseUrlOption = "",
) -> None:
    """Migrate each service's tables to REVISION (services do this themselves when they start)."""
    from shared.migrations import current, upgrade

    async def action(database: Database, migrations: ServiceMigrations) -> str:
        await upgrade(database, migrations, revision)
        return f"at {await current(database, migrations)}"

    _for_each_service(service, database_url, action)


@db.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="target revision, e.g. 0001 or -1; 'base' drops every table")],
    service: ServiceOption = None,
    database_url: DatabaseUrlOption = "",
) -> None:
    """Take each service's tables back to REVISION. Stop the services first; back up first."""
    from shared.migrations import current, downgrade

    async def action(database: Database, migrations: ServiceMigrations) -> str:
        await downgrade(database, migrations, revision)
        return f"at {await current(database, migrations) or 'base (no tables)'}"

    _for_each_service(service, database_url, action)


@db.command("current")
def db_current(service: ServiceOption = None, database_url: DatabaseUrlOption = "") -> None:
    """Show the revision each service's database is at, and the code's head revision."""
    from shared.migrations import current, head

    async def action(database: Database, migrations: ServiceMigrations) -> str:
        at, latest = await current(database, migrations), head(migrations)
        state = "up to date" if at == latest else f"behind: head is {latest}"
        return f"{at or 'not migrated'} ({state})"

    _for_each_service(service, database_url, action)


@db.command("revision")
def db_revision(
    service: Annotated[str, typer.Argument(help="the service whose tables changed")],
    message: Annotated[str, typer.Option("--message", "-m", help="what the revision does")],
    autogenerate: Annotated[bool, typer.Option(help="write the operations that turn head into the models")] = True,
) -> None:
    """Write the service's next revision file (for developers; compares the models with a scratch
    SQLite database at head). Read and edit it before committing."""
    import tempfile

    from shared.migrations import new_revision

    with tempfile.TemporaryDirectory() as scratch:

        async def action(database: Database, migrations: ServiceMigrations) -> str:
            path = await new_revision(database, migrations, message, autogenerate=autogenerate)
            return f"wrote {path}"

        _for_each_service([service], f"sqlite+aiosqlite:///{scratch}/{service}.db", action)
