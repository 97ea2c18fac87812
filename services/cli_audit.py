"""``pathways audit``: check a service's hash-chained audit trail, and make audit keys."""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import Annotated

import typer

audit = typer.Typer(help="The hash-chained audit trails of the four services.")
AUDITED_SERVICES = ("intake", "router", "directory", "notify")


@audit.command("verify")
def audit_verify(
    service: Annotated[str, typer.Argument(help="intake, router, directory or notify")],
    database_url: Annotated[str, typer.Option(
        envvar="DATABASE_URL", help="The service's database (default: its own, as the service finds it)")] = "",
    anchor: Annotated[list[str] | None, typer.Option(
        help="SEQ:HASH from an 'audit chain sealed' log line, kept outside the database (repeatable): "
             "catches the newest records deleted with the chain head rewound")] = None,
) -> None:
    """Recompute the service's audit chain: every record's hash, every link, the chain head.

    Exits 1 and names each edited, deleted or reordered record (by seq and id) when the trail was
    tampered with; 2 when the chain cannot be checked (unknown service, audit key missing). Uses the
    audit keys the service uses (PATHWAYS_AUDIT_KEYS)."""
    from services.cli import _service_schema
    from shared.audit_chain import Anchor, AuditKeyError, AuditKeys, ChainReport, verify

    if service not in AUDITED_SERVICES:
        raise typer.BadParameter(f"'{service}' keeps no audit trail (one of: {', '.join(AUDITED_SERVICES)})")
    try:
        anchors = [Anchor.parse(a) for a in anchor or []]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--anchor") from None
    settings, migrations = _service_schema(service, database_url)
    try:
        keys = AuditKeys.of(settings)
    except AuditKeyError as exc:
        typer.echo(f"cannot verify: {exc}", err=True)
        raise typer.Exit(2) from None

    async def run() -> ChainReport:
        db = migrations.database(settings.resolved_database_url())
        try:
            return await verify(db, keys, anchors=anchors)
        finally:
            await db.dispose()

    from sqlalchemy.exc import SQLAlchemyError

    try:
        report = asyncio.run(run())
    except SQLAlchemyError as exc:
        # The type only: a driver's message can quote the URL, password included.
        typer.echo(f"cannot verify: the {service} database cannot be read ({type(exc).__name__}); is it migrated "
                   "(pathways db upgrade) and is DATABASE_URL right?", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{service}: {report.sealed} sealed record(s), chain head at seq {report.head_seq}; "
               f"{report.unsealed} not yet sealed")
    if report.intact:
        typer.echo(f"{service}: the audit chain is intact")
        return
    for finding in report.findings:
        typer.echo(f"{service}: {finding}")
    unverifiable = all(f.kind == "unverifiable" for f in report.findings)
    raise typer.Exit(2 if unverifiable else 1)


@audit.command("keygen")
def audit_keygen(key_id: Annotated[str, typer.Argument(help="id for the new key, e.g. 2026-11")]) -> None:
    """Print a new audit HMAC key as 'id:base64', for PATHWAYS_AUDIT_KEYS."""
    if not key_id or ":" in key_id or "," in key_id or len(key_id) > 40:
        raise typer.BadParameter("a key id is 1 to 40 characters with no ':' or ','")
    typer.echo(f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}")
