"""The ``pathways`` command: run the system, and the operations ops need by hand."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from services.launcher import DATA_DIR_DEFAULT, DEFAULT_PORTS, System

app = typer.Typer(help="Pathways: referral routes from NHS settings to specialist domestic abuse services.",
                  no_args_is_help=True)
dlq = typer.Typer(help="The dead-letter stream: messages a consumer gave up on.")
app.add_typer(dlq, name="dlq")
gazetteer = typer.Typer(help="The directory's postcode gazetteer (ONS Postcode Directory / NSPL).")
app.add_typer(gazetteer, name="gazetteer")

EXAMPLE = "examples/gp-referral.json"


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="Where NATS, SQLite, logs and dev secrets live")] = DATA_DIR_DEFAULT,
) -> None:
    """Start NATS (unless NATS_URL is set) and the four services on SQLite (unless DATABASE_URL is set)."""
    system = System(
        data_dir=data_dir.resolve(),
        ports=dict(DEFAULT_PORTS),
        nats_url=os.environ.get("NATS_URL") or None,
        database_url=os.environ.get("DATABASE_URL") or None,
    )
    stop = {"requested": False}

    def request_stop(signum: int, _frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    typer.echo("Starting Pathways…")
    system.start()
    nats = system.nats_url or (system.nats.url if system.nats else "")
    typer.echo(
        f"""
Pathways is running (logs in {system.log_dir}).

  NATS       {nats}{'  (bundled, JetStream store in ' + str(system.data_dir / 'nats') + ')' if system.nats else ''}
  intake     {system.url('intake')}      FHIR API for EHR systems   {system.url('intake')}/docs
  router     {system.url('router')}      routing decisions          {system.url('router')}/docs
  directory  {system.url('directory')}      providers and coverage     {system.url('directory')}/docs
  notify     {system.url('notify')}      provider offers, handoffs  {system.url('notify')}/docs

Post the example referral as an EHR would (sample client key):

  curl -s -X POST {system.url('intake')}/fhir/Bundle \\
    -H 'Content-Type: application/fhir+json' -H 'Authorization: Bearer pw_sample_ehr_client' \\
    --data @{EXAMPLE}

List the sample provider's offers, then accept one and read its handoff:

  curl -s {system.url('notify')}/offers -H 'Authorization: Bearer pw_sample_aire_valley_da'
  curl -s -X POST {system.url('notify')}/offers/OFFER_ID/accept -H 'Authorization: Bearer pw_sample_aire_valley_da'
  curl -s {system.url('notify')}/offers/OFFER_ID/handoff -H 'Authorization: Bearer pw_sample_aire_valley_da'

Follow the referral's Task (id from the first answer):

  curl -s {system.url('intake')}/fhir/Task/TASK_ID -H 'Authorization: Bearer pw_sample_ehr_client'

Ops endpoints take the development ops key: {system.environment()['PATHWAYS_OPS_KEY']}

Press Ctrl-C to stop.
"""
    )
    try:
        while not stop["requested"]:
            exited = system.exited()
            if exited:
                typer.echo(f"A service stopped unexpectedly: {exited}; see {system.log_dir}", err=True)
                raise typer.Exit(1)
            time.sleep(0.5)
    finally:
        typer.echo("Stopping Pathways…")
        system.stop()
        typer.echo("Stopped.")


@dlq.command("replay")
def dlq_replay(
    nats_url: Annotated[str, typer.Option(envvar="NATS_URL")] = f"nats://127.0.0.1:{DEFAULT_PORTS['nats']}",
    limit: int = 1000,
) -> None:
    """Republish dead-lettered messages to their original subjects."""
    from shared.bus import Bus

    async def replay() -> int:
        bus = Bus(nats_url, name="pathways-cli")
        await bus.start()
        try:
            await bus.wait_ready(timeout=10)
            return await bus.replay_dead_letters(limit=limit)
        finally:
            await bus.close()

    typer.echo(f"replayed {asyncio.run(replay())} message(s)")


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
    from services.directory.gazetteer import GazetteerFormatError, import_onspd, load_reference_if_empty
    from services.directory.settings import DirectorySettings
    from services.directory.store import TABLES
    from shared.db import Database

    settings = DirectorySettings(database_url=database_url) if database_url else DirectorySettings()

    async def load() -> str:
        db = Database(settings.resolved_database_url(), TABLES)
        try:
            await db.create_all()
            await load_reference_if_empty(db)
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
