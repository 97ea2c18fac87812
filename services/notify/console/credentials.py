"""Console pages for credentials: EHR clients (held by intake), providers' keys and ops users (held by the
directory). Issue, rotate and revoke call the owners' ops APIs as the signed-in ops user. A new key is
shown once, on the next page only (it travels in the encrypted session cookie's one-time message, never
in a URL), and never again."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Form, Request, Response

from services.notify.console.cases import router
from services.notify.console.directory import _segment
from services.notify.console.realm import CONSOLE, OpsWeb
from services.notify.console.remote import call

OWNERS = {"clients": ("intake", "/ops/clients"), "ops-users": ("directory", "/ops-users")}


def _issued(request: Request, what: str, found: dict[str, Any]) -> None:
    CONSOLE.flash(request, f"New key for {what}, shown this once: copy it now and pass it on safely. "
                           f"{found['api_key']}")


@router.get("/credentials")
async def credentials(request: Request, _caller: OpsWeb) -> Response:
    clients = await call(request, "intake", "GET", "/ops/clients")
    users = await call(request, "directory", "GET", "/ops-users")
    organisations = await call(request, "directory", "GET", "/organisations")
    keys = {o["id"]: await call(request, "directory", "GET", f"/organisations/{_segment(o['id'])}/keys")
            for o in organisations}
    return CONSOLE.pages.render(request, "console/credentials.html", {
        "clients": clients, "users": users, "organisations": organisations, "keys": keys})


@router.post("/credentials/clients")
async def issue_client(
    request: Request, _caller: OpsWeb,
    client_id: Annotated[str, Form(alias="id", max_length=80)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    ods_codes: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    body = {"id": client_id.strip(), "name": name.strip(), "ods_codes": [c for c in re.split(r"[\s,]+", ods_codes) if c]}
    found = await call(request, "intake", "POST", "/ops/clients", json=body)
    _issued(request, f"EHR client {found['id']}", found)
    return CONSOLE.redirect("/console/credentials")


@router.post("/credentials/ops-users")
async def issue_ops_user(
    request: Request, _caller: OpsWeb,
    user_id: Annotated[str, Form(alias="id", max_length=100)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=20)] = "ops",
) -> Response:
    found = await call(request, "directory", "POST", "/ops-users",
                       json={"id": user_id.strip(), "name": name.strip(), "role": role})
    _issued(request, f"{found.get('role', 'ops')} user {found['id']}", found)
    return CONSOLE.redirect("/console/credentials")


@router.post("/credentials/providers/{organisation_id}/keys")
async def issue_provider_key(organisation_id: str, request: Request, _caller: OpsWeb,
                             name: Annotated[str, Form(max_length=100)] = "") -> Response:
    found = await call(request, "directory", "POST", f"/organisations/{_segment(organisation_id)}/keys",
                       json={"name": name.strip()})
    _issued(request, f"{organisation_id}'s key '{found['name']}'", found)
    return CONSOLE.redirect("/console/credentials")


@router.post("/credentials/providers/{organisation_id}/keys/{name}/{action}")
async def change_provider_key(organisation_id: str, name: str, action: str, request: Request,
                              _caller: OpsWeb) -> Response:
    path = f"/organisations/{_segment(organisation_id)}/keys/{_segment(name)}"
    return await _change(request, "directory", path, action, f"{organisation_id}'s key '{name}'")


@router.post("/credentials/{owner}/{credential_id}/{action}")
async def change_credential(owner: str, credential_id: str, action: str, request: Request,
                            _caller: OpsWeb) -> Response:
    if owner not in OWNERS:
        return CONSOLE.error_page(request, 404, "No such kind of credential.")
    service, base = OWNERS[owner]
    what = "EHR client" if owner == "clients" else "ops user"
    return await _change(request, service, f"{base}/{_segment(credential_id)}", action, f"{what} {credential_id}")


async def _change(request: Request, service: str, path: str, action: str, what: str) -> Response:
    if action not in ("rotate", "revoke"):
        return CONSOLE.error_page(request, 404, "Credentials can be rotated or revoked here.")
    found = await call(request, service, "POST", f"{path}/{action}")
    if action == "rotate":
        _issued(request, what, found)
    else:
        CONSOLE.flash(request, f"Revoked {what}: it stops working at once.")
    return CONSOLE.redirect("/console/credentials")
