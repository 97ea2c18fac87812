"""Calls the console makes to the other services' ops APIs, as the signed-in ops user (their own key), so
each service applies its own rules, roles and audit trail. A refusal is shown on the page as the
service worded it; an unreachable service is a 503 page."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import HTTPException, Request, status

from services.notify.console.realm import session_key
from services.notify.settings import NotifySettings
from shared.service import Runtime


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def base_url(request: Request, service: str) -> str:
    settings: NotifySettings = _runtime(request).settings  # type: ignore[assignment]
    return {"directory": settings.directory_url, "intake": settings.intake_url, "router": settings.router_url}[service]


async def call(request: Request, service: str, method: str, path: str, *, json: Any = None,
               missing_ok: bool = False) -> Any:
    """The JSON answer of ``method path`` on ``service`` (``None`` for a 404 when ``missing_ok``)."""
    url = f"{base_url(request, service).rstrip('/')}{path}"
    try:
        response = await _runtime(request).http.request(
            method, url, json=json, headers={"Authorization": f"Bearer {session_key(request)}"})
    except httpx.HTTPError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail=f"The {service} service cannot be reached right now.") from exc
    if response.status_code == 404 and missing_ok:
        return None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail") or response.reason_phrase
        except ValueError:
            detail = response.reason_phrase
        code = response.status_code if response.status_code in (400, 403, 404, 409, 422) else 503
        raise HTTPException(code, detail=f"The {service} service refused: {detail}")
    return response.json() if response.content else None
