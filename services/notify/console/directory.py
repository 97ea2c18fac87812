"""Console pages for the directory: organisations and their services, coverage, capacity and pausing.
Every change is the directory's own ops API, called as the signed-in ops user: its validation, audit
trail and ``directory.changed`` event apply unchanged."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Form, Request, Response

from services.notify.console.cases import router
from services.notify.console.realm import CONSOLE, OpsWeb
from services.notify.console.remote import call
from shared.reference import Community, CoverageLevel, ServiceStatus, ServiceType

WAIT_BANDS = ("same-day", "within-a-week", "1-4-weeks", "over-4-weeks")
# What a service's PUT takes back (the public view adds the organisation's name and by-and-for).
READ_ONLY = {"id", "organisation_name", "organisation_by_and_for", "match_reason"}


def _codes(text: str) -> list[str]:
    """Coverage typed as codes separated by commas, spaces or new lines."""
    return [c for c in re.split(r"[\s,]+", text.strip()) if c]


def _segment(value: str) -> str:
    return quote(value, safe="")


def choices() -> dict[str, Any]:
    return {"communities": [c.value for c in Community], "service_types": [t.value for t in ServiceType],
            "levels": [c.value for c in CoverageLevel], "statuses": [s.value for s in ServiceStatus],
            "wait_bands": WAIT_BANDS, "risk_bands": ("standard", "medium", "high")}


@router.get("/directory")
async def organisations(request: Request, _caller: OpsWeb) -> Response:
    rows = await call(request, "directory", "GET", "/organisations")
    return CONSOLE.pages.render(request, "console/organisations.html", {"organisations": rows, **choices()})


@router.post("/directory/organisations")
async def create_organisation(
    request: Request, _caller: OpsWeb,
    organisation_id: Annotated[str, Form(alias="id", max_length=80)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    by_and_for: Annotated[list[str] | None, Form()] = None,
    delivery: Annotated[str, Form(max_length=20)] = "poll",
    webhook_url: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    body = {"id": organisation_id.strip(), "name": name.strip(), "by_and_for": by_and_for or [],
            "delivery": delivery, "webhook_url": webhook_url.strip() or None}
    await call(request, "directory", "POST", "/organisations", json=body)
    CONSOLE.flash(request, f"Organisation {body['name']} added.")
    return CONSOLE.redirect(f"/console/directory/{_segment(body['id'])}")


@router.get("/directory/{organisation_id}")
async def organisation(organisation_id: str, request: Request, _caller: OpsWeb) -> Response:
    found = await call(request, "directory", "GET", f"/organisations/{_segment(organisation_id)}")
    services = await call(request, "directory", "GET", f"/organisations/{_segment(organisation_id)}/services")
    return CONSOLE.pages.render(request, "console/organisation.html",
                                {"organisation": found, "services": services, **choices()})


@router.post("/directory/{organisation_id}/edit")
async def edit_organisation(
    organisation_id: str, request: Request, _caller: OpsWeb,
    name: Annotated[str, Form(max_length=200)] = "",
    by_and_for: Annotated[list[str] | None, Form()] = None,
    delivery: Annotated[str, Form(max_length=20)] = "poll",
    webhook_url: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    found = await call(request, "directory", "GET", f"/organisations/{_segment(organisation_id)}")
    body = {k: v for k, v in found.items() if k not in ("id", "signing_secret_count")}
    body.update(name=name.strip(), by_and_for=by_and_for or [], delivery=delivery,
                webhook_url=webhook_url.strip() or None)
    await call(request, "directory", "PUT", f"/organisations/{_segment(organisation_id)}", json=body)
    CONSOLE.flash(request, f"Organisation {body['name']} saved.")
    return CONSOLE.redirect(f"/console/directory/{_segment(organisation_id)}")


@router.post("/directory/services/{service_id}/edit")
async def edit_service(
    service_id: str, request: Request, _caller: OpsWeb,
    name: Annotated[str, Form(max_length=200)] = "",
    service_type: Annotated[str, Form(max_length=40)] = "",
    by_and_for: Annotated[list[str] | None, Form()] = None,
    risk_levels: Annotated[list[str] | None, Form()] = None,
) -> Response:
    found = await call(request, "directory", "GET", f"/services/{_segment(service_id)}")
    body = {k: v for k, v in found.items() if k not in READ_ONLY}
    body.update(name=name.strip(), service_type=service_type, by_and_for=by_and_for or [],
                risk_levels=risk_levels or [])
    await call(request, "directory", "PUT", f"/services/{_segment(service_id)}", json=body)
    CONSOLE.flash(request, f"{body['name']}: saved.")
    return CONSOLE.redirect(f"/console/directory/{_segment(found['organisation_id'])}")


@router.post("/directory/services")
async def create_service(
    request: Request, _caller: OpsWeb,
    service_id: Annotated[str, Form(alias="id", max_length=80)] = "",
    organisation_id: Annotated[str, Form(max_length=80)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    service_type: Annotated[str, Form(max_length=40)] = "",
    coverage: Annotated[str, Form(max_length=4000)] = "",
    coverage_level: Annotated[str, Form(max_length=20)] = "local",
    by_and_for: Annotated[list[str] | None, Form()] = None,
    risk_levels: Annotated[list[str] | None, Form()] = None,
) -> Response:
    body = {"id": service_id.strip(), "organisation_id": organisation_id, "name": name.strip(),
            "service_type": service_type, "coverage": _codes(coverage), "coverage_level": coverage_level,
            "by_and_for": by_and_for or [], "risk_levels": risk_levels or []}
    await call(request, "directory", "POST", "/services", json=body)
    CONSOLE.flash(request, f"Service {body['name']} added.")
    return CONSOLE.redirect(f"/console/directory/{_segment(organisation_id)}")


@router.post("/directory/services/{service_id}/capacity")
async def capacity(
    service_id: str, request: Request, _caller: OpsWeb,
    accepting: Annotated[str, Form(max_length=5)] = "",
    status: Annotated[str, Form(max_length=30)] = "",
    max_open_offers: Annotated[str, Form(max_length=6)] = "",
    wait_band: Annotated[str, Form(max_length=30)] = "",
) -> Response:
    body: dict[str, Any] = {}
    if accepting in ("yes", "no"):
        body["accepting"] = accepting == "yes"
    if status:
        body["status"] = status
    if max_open_offers.strip():
        body["max_open_offers"] = max_open_offers.strip()  # the directory validates the number
    if wait_band:
        body["wait_band"] = wait_band
    found = await call(request, "directory", "PATCH", f"/services/{_segment(service_id)}/capacity", json=body)
    state = "accepting referrals" if found["accepting"] else "paused"
    CONSOLE.flash(request, f"{found['name']}: {state}, {found['status']}.")
    return CONSOLE.redirect(f"/console/directory/{_segment(found['organisation_id'])}")


@router.post("/directory/services/{service_id}/coverage")
async def coverage(
    service_id: str, request: Request, _caller: OpsWeb,
    codes: Annotated[str, Form(max_length=4000)] = "",
    coverage_level: Annotated[str, Form(max_length=20)] = "local",
) -> Response:
    found = await call(request, "directory", "GET", f"/services/{_segment(service_id)}")
    body = {k: v for k, v in found.items() if k not in READ_ONLY}
    body.update(coverage=_codes(codes), coverage_level=coverage_level)
    await call(request, "directory", "PUT", f"/services/{_segment(service_id)}", json=body)
    CONSOLE.flash(request, f"{found['name']}: coverage saved.")
    return CONSOLE.redirect(f"/console/directory/{_segment(found['organisation_id'])}")
