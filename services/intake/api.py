"""Intake's FHIR API (for EHR systems) and its internal handoff read (for notify)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from services.intake.domain import RiskThresholds, parse_bundle, parse_referral
from services.intake.settings import IntakeSettings
from services.intake.store import ApiClient, Referral
from services.intake.task import task_resource
from shared.audit import record
from shared.auth import PresentedKey, ServiceCaller, hash_api_key
from shared.crypto import FieldCipher
from shared.events import ReferralReceived
from shared.fhir import FHIR_JSON, FhirError, Issue
from shared.outbox import enqueue
from shared.service import RuntimeDep, SessionDep

router = APIRouter()
ACCEPTED_CONTENT_TYPES = ("application/fhir+json", "application/json")


async def require_client(key: PresentedKey, session: SessionDep) -> ApiClient:
    client = (await session.exec(select(ApiClient).where(ApiClient.key_hash == hash_api_key(key)))).first()
    if client is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Unknown API key.",
                            headers={"WWW-Authenticate": "Bearer"})
    return client


ClientDep = Annotated[ApiClient, Depends(require_client)]


def cipher(request: Request) -> FieldCipher:
    return request.app.state.cipher  # type: ignore[no-any-return]


async def read_fhir_json(request: Request, settings: IntakeSettings) -> tuple[dict[str, Any], bytes]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise FhirError(415, [Issue("not-supported", "Send the Bundle as application/fhir+json.")])
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise FhirError(413, [Issue("too-costly", f"The body exceeds {settings.max_body_bytes} bytes.")])
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > settings.max_body_bytes:
            raise FhirError(413, [Issue("too-costly", f"The body exceeds {settings.max_body_bytes} bytes.")])
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FhirError(400, [Issue("structure", f"The body is not valid JSON ({type(exc).__name__}).")]) from None
    if not isinstance(body, dict):
        raise FhirError(400, [Issue("structure", "The body must be a JSON object (a FHIR Bundle).")])
    return body, raw


def accepted(referral: Referral) -> JSONResponse:
    return JSONResponse(
        task_resource(referral),
        status_code=status.HTTP_202_ACCEPTED,
        media_type=FHIR_JSON,
        headers={"Location": f"/fhir/Task/{referral.id}"},
    )


@router.post(
    "/fhir/Bundle",
    tags=["fhir"],
    status_code=202,
    summary="Submit a referral Bundle; answers with the FHIR Task that tracks it",
)
async def submit_referral(request: Request, client: ClientDep, runtime: RuntimeDep) -> JSONResponse:
    settings: IntakeSettings = runtime.settings  # type: ignore[assignment]
    body, raw = await read_fhir_json(request, settings)
    bundle = parse_bundle(body)
    parsed = parse_referral(
        bundle,
        thresholds=RiskThresholds(high=settings.dash_high_threshold, medium=settings.dash_medium_threshold),
    )
    if parsed.referrer_ods not in client.ods_codes:
        raise FhirError(403, [Issue("forbidden", f"This client may not refer for ODS code {parsed.referrer_ods}.")])
    request_hash = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    if parsed.bundle_identifier:
        existing = await _existing(runtime, client.id, parsed.bundle_identifier)
        if existing is not None:
            return _replay(existing, request_hash)

    referral = Referral(
        client_id=client.id,
        bundle_identifier=parsed.bundle_identifier,
        request_hash=request_hash,
        referrer_ods=parsed.referrer_ods,
        summary=parsed.summary.model_dump(mode="json"),
        consent=parsed.consent.model_dump(mode="json"),
        identifying="",
    )
    referral.identifying = cipher(request).encrypt(
        json.dumps(parsed.identifying).encode(), aad=referral.id.bytes
    )
    try:
        async with runtime.db.transaction() as session:
            session.add(referral)
            enqueue(
                session,
                ReferralReceived(
                    case_id=referral.id,
                    referrer_ods=parsed.referrer_ods,
                    summary=parsed.summary,
                    consent=parsed.consent,
                ),
            )
    except IntegrityError:
        # A concurrent retry of the same Bundle committed first: answer as it was answered.
        existing = await _existing(runtime, client.id, parsed.bundle_identifier or "")
        if existing is None:
            raise
        return _replay(existing, request_hash)
    return accepted(referral)


async def _existing(runtime: RuntimeDep, client_id: str, bundle_identifier: str) -> Referral | None:
    async with runtime.db.session() as session:
        return (
            await session.exec(
                select(Referral).where(Referral.client_id == client_id, Referral.bundle_identifier == bundle_identifier)
            )
        ).first()


def _replay(existing: Referral, request_hash: str) -> JSONResponse:
    if existing.request_hash != request_hash:
        raise FhirError(
            409,
            [Issue("duplicate", "A different Bundle was already submitted with this Bundle.identifier.",
                   "Bundle.identifier")],
        )
    return accepted(existing)


@router.get("/fhir/Task/{task_id}", tags=["fhir"], summary="The Task that tracks a referral")
async def read_task(task_id: str, client: ClientDep, session: SessionDep) -> JSONResponse:
    referral = await _own_referral(session, client, task_id)
    return JSONResponse(task_resource(referral), media_type=FHIR_JSON)


async def _own_referral(session: SessionDep, client: ApiClient, task_id: str) -> Referral:
    try:
        referral_id = UUID(task_id)
    except ValueError:
        referral_id = None
    referral = await session.get(Referral, referral_id) if referral_id else None
    # Another client's referral is "not found", so ids cannot be probed.
    if referral is None or referral.client_id != client.id:
        raise FhirError(404, [Issue("not-found", f"No Task with id '{task_id}'.", "Task.id")])
    return referral


@router.get(
    "/internal/referrals/{case_id}/handoff",
    tags=["internal"],
    summary="Identifying details for a handoff (notify only; every read is audited)",
)
async def read_handoff_details(
    case_id: UUID, organisation_id: str, runtime: RuntimeDep, caller: ServiceCaller, request: Request
) -> dict[str, Any]:
    async with runtime.db.transaction() as session:
        referral = await session.get(Referral, case_id)
        if referral is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such referral.")
        details = json.loads(cipher(request).decrypt(referral.identifying, aad=referral.id.bytes))
        record(session, caller, "release-identifying-data", case_id=case_id, detail=f"to organisation {organisation_id}")
    return {"case_id": str(case_id), "referrer_ods": referral.referrer_ods, **details}
