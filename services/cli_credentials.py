"""``pathways clients``, ``pathways providers keys`` and ``pathways ops-users``: credentials an area
issues and revokes itself.

These commands call the owning service's ops API (intake for EHR clients, the directory for provider
keys and ops users) with the caller's own ops key, so each action is attributed to that ops user in
the audit trail. The one exception is ``pathways ops-users bootstrap``: the very first ops user is
written straight to the directory's database (reaching the database is the privilege), and only while
no ops user can sign in. Answers are printed as JSON; a new key appears once, in ``api_key``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer

clients = typer.Typer(help="EHR clients: register (bound to ODS codes), list, show, rotate, expire, revoke.",
                      no_args_is_help=True)
providers = typer.Typer(help="Provider organisations' credentials.", no_args_is_help=True)
provider_keys = typer.Typer(help="An organisation's named API keys: create, list, rotate, expire, revoke.",
                            no_args_is_help=True)
providers.add_typer(provider_keys, name="keys")
ops_users = typer.Typer(help="Named ops credentials, valid on every service's ops API.", no_args_is_help=True)

OpsKey = Annotated[str, typer.Option("--ops-key", envvar="PATHWAYS_OPS_KEY", show_default=False,
                                     help="Your ops key (or set PATHWAYS_OPS_KEY)")]
IntakeUrl = Annotated[str, typer.Option("--intake-url", envvar="PATHWAYS_INTAKE_URL")]
DirectoryUrl = Annotated[str, typer.Option("--directory-url", envvar="PATHWAYS_DIRECTORY_URL")]
ValidDays = Annotated[int, typer.Option("--valid-days", min=1, help="Days until the key expires")]
At = Annotated[str | None, typer.Option("--at", help="When it expires (default: now): ISO 8601, UTC unless a zone is given")]
INTAKE = "http://127.0.0.1:8001"
DIRECTORY = "http://127.0.0.1:8003"
SHOWN_ONCE = "The api_key above is shown once: store it now (only its digest is kept)."


def call(method: str, url: str, ops_key: str, body: dict[str, Any] | None = None) -> Any:
    """One ops API call; prints the answer, or the problem and exits non-zero."""
    try:
        response = httpx.request(method, url, json=body, headers={"Authorization": f"Bearer {ops_key}"}, timeout=30)
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach {url}: {type(exc).__name__}", err=True)
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        typer.echo(f"{response.status_code}: {detail}", err=True)
        raise typer.Exit(1)
    answer = response.json()
    typer.echo(json.dumps(answer, indent=2))
    if isinstance(answer, dict) and "api_key" in answer:
        typer.echo(SHOWN_ONCE, err=True)
    return answer


def expiry(at: str | None) -> dict[str, Any] | None:
    if at is None:
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise typer.BadParameter("an ISO 8601 time, e.g. 2026-12-01T09:00:00+00:00", param_hint="--at") from None
    return {"at": (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()}


# --- EHR clients (intake) ---------------------------------------------------------------------------


@clients.command("create")
def clients_create(
    client_id: Annotated[str, typer.Argument(help="Stable id, e.g. 'emis-leeds-north'")],
    name: Annotated[str, typer.Option(help="The EHR system and who runs it")],
    ods: Annotated[list[str], typer.Option("--ods", help="An ODS code it may refer for (repeat for several)")],
    ops_key: OpsKey, valid_days: ValidDays = 365, intake_url: IntakeUrl = INTAKE,
) -> None:
    """Register an EHR client; prints its key once."""
    call("POST", f"{intake_url}/ops/clients", ops_key,
         {"id": client_id, "name": name, "ods_codes": ods, "valid_days": valid_days})


@clients.command("list")
def clients_list(ops_key: OpsKey, intake_url: IntakeUrl = INTAKE) -> None:
    """Every EHR client, with its ODS codes, state and expiry."""
    call("GET", f"{intake_url}/ops/clients", ops_key)


@clients.command("show")
def clients_show(client_id: str, ops_key: OpsKey, intake_url: IntakeUrl = INTAKE) -> None:
    """One EHR client."""
    call("GET", f"{intake_url}/ops/clients/{client_id}", ops_key)


@clients.command("rotate")
def clients_rotate(client_id: str, ops_key: OpsKey, valid_days: ValidDays = 365, intake_url: IntakeUrl = INTAKE) -> None:
    """A new key (printed once) and expiry; the old key stops working at once."""
    call("POST", f"{intake_url}/ops/clients/{client_id}/rotate", ops_key, {"valid_days": valid_days})


@clients.command("expire")
def clients_expire(client_id: str, ops_key: OpsKey, at: At = None, intake_url: IntakeUrl = INTAKE) -> None:
    """Bring the key's expiry forward (default: now)."""
    call("POST", f"{intake_url}/ops/clients/{client_id}/expire", ops_key, expiry(at))


@clients.command("revoke")
def clients_revoke(client_id: str, ops_key: OpsKey, intake_url: IntakeUrl = INTAKE) -> None:
    """Revoke for good; its referrals and Tasks stay."""
    call("POST", f"{intake_url}/ops/clients/{client_id}/revoke", ops_key)


# --- Provider keys (directory) ----------------------------------------------------------------------


@provider_keys.command("create")
def provider_keys_create(
    organisation_id: str, name: Annotated[str, typer.Argument(help="What the key is for, e.g. 'case-system'")],
    ops_key: OpsKey, valid_days: ValidDays = 365, directory_url: DirectoryUrl = DIRECTORY,
) -> None:
    """Issue a named key for an organisation; prints it once."""
    call("POST", f"{directory_url}/organisations/{organisation_id}/keys", ops_key,
         {"name": name, "valid_days": valid_days})


@provider_keys.command("list")
def provider_keys_list(organisation_id: str, ops_key: OpsKey, directory_url: DirectoryUrl = DIRECTORY) -> None:
    """An organisation's keys, with state and expiry."""
    call("GET", f"{directory_url}/organisations/{organisation_id}/keys", ops_key)


@provider_keys.command("rotate")
def provider_keys_rotate(organisation_id: str, name: str, ops_key: OpsKey, valid_days: ValidDays = 365,
                         directory_url: DirectoryUrl = DIRECTORY) -> None:
    """A new secret (printed once) and expiry for a named key."""
    call("POST", f"{directory_url}/organisations/{organisation_id}/keys/{name}/rotate", ops_key,
         {"valid_days": valid_days})


@provider_keys.command("expire")
def provider_keys_expire(organisation_id: str, name: str, ops_key: OpsKey, at: At = None,
                         directory_url: DirectoryUrl = DIRECTORY) -> None:
    """Bring a key's expiry forward (default: now)."""
    call("POST", f"{directory_url}/organisations/{organisation_id}/keys/{name}/expire", ops_key, expiry(at))


@provider_keys.command("revoke")
def provider_keys_revoke(organisation_id: str, name: str, ops_key: OpsKey, directory_url: DirectoryUrl = DIRECTORY) -> None:
    """Revoke a key for good."""
    call("POST", f"{directory_url}/organisations/{organisation_id}/keys/{name}/revoke", ops_key)


# --- Ops users (directory) --------------------------------------------------------------------------


@ops_users.command("bootstrap")
def ops_users_bootstrap(
    user_id: Annotated[str, typer.Argument(help="The first ops user's handle, e.g. 'alex.khan'")],
    name: str = "",
    valid_days: ValidDays = 365,
    database_url: Annotated[
        str, typer.Option(envvar="DATABASE_URL", help="The directory's database (default: .data/directory.db)")
    ] = "",
) -> None:
    """Create the first ops user straight in the directory's database (refused once one can sign in)."""
    from services.directory.credentials import NoBootstrap, OpsUserCreate, bootstrap_ops_user
    from services.directory.migrations import MIGRATIONS
    from services.directory.settings import DirectorySettings
    from shared.migrations import upgrade

    settings = DirectorySettings(database_url=database_url) if database_url else DirectorySettings()
    body = OpsUserCreate(id=user_id, name=name, valid_days=valid_days)

    async def bootstrap() -> dict[str, Any]:
        db = MIGRATIONS.database(settings.resolved_database_url())
        try:
            await upgrade(db, MIGRATIONS)
            return (await bootstrap_ops_user(db, body)).model_dump(mode="json")
        finally:
            await db.dispose()

    try:
        issued = asyncio.run(bootstrap())
    except NoBootstrap as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(issued, indent=2))
    typer.echo(SHOWN_ONCE, err=True)


@ops_users.command("create")
def ops_users_create(user_id: str, ops_key: OpsKey, name: str = "", valid_days: ValidDays = 365,
                     role: str = "ops", directory_url: DirectoryUrl = DIRECTORY) -> None:
    """Create a named ops user (``--role commissioner``: reports only); prints the key once."""
    call("POST", f"{directory_url}/ops-users", ops_key,
         {"id": user_id, "name": name, "valid_days": valid_days, "role": role})


@ops_users.command("list")
def ops_users_list(ops_key: OpsKey, directory_url: DirectoryUrl = DIRECTORY) -> None:
    """Every ops user, with state and expiry."""
    call("GET", f"{directory_url}/ops-users", ops_key)


@ops_users.command("rotate")
def ops_users_rotate(user_id: str, ops_key: OpsKey, valid_days: ValidDays = 365,
                     directory_url: DirectoryUrl = DIRECTORY) -> None:
    """A new key (printed once) and expiry for an ops user."""
    call("POST", f"{directory_url}/ops-users/{user_id}/rotate", ops_key, {"valid_days": valid_days})


@ops_users.command("expire")
def ops_users_expire(user_id: str, ops_key: OpsKey, at: At = None, directory_url: DirectoryUrl = DIRECTORY) -> None:
    """Bring an ops user's expiry forward (default: now)."""
    call("POST", f"{directory_url}/ops-users/{user_id}/expire", ops_key, expiry(at))


@ops_users.command("revoke")
def ops_users_revoke(user_id: str, ops_key: OpsKey, directory_url: DirectoryUrl = DIRECTORY) -> None:
    """Revoke an ops user for good."""
    call("POST", f"{directory_url}/ops-users/{user_id}/revoke", ops_key)
