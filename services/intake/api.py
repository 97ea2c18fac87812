"""Intake's FHIR API (for EHR systems) and its internal handoff read (for notify). Views stay thin:
the rules are in ``domain`` (what a referral is) and ``referrals`` (what happens to one)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

from cachetools import TTLCache
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake import referrals
from services.intake.capability import capability_statement
from services.intake.domain import ParsedCancellation, parse_bundle, parse_consent, parse_submission
from services.intake.oauth import ACCESS_TOKEN_PREFIX, OAUTH2, client_for_access_token
from services.intake.settings import IntakeSettings
from services.intake.store import AcceptedOffer, ApiClient, Referral
from services.intake.task import task_resource
from shared.audit import record
from shared.auth import ApiKeyCredential, BearerCredential, NotifyCaller, hash_api_key, presented_key
from shared.consent import CONSENT_REFUSAL, NOT_ACCEPTED, release_verdict
from shared.crypto import FieldCipher
from shared.events import utcnow
from shared.fhir import FHIR_JSON, FhirError, FhirResponse, Issue
from shared.metrics import REFERRALS_RECEIVED, REFERRALS_REJECTED
from shared.openapi import errors, fhir_resource
from shared.problems import problem
from shared.search import InvalidSearch, last_updated_condition
from shared.service import Runtime, RuntimeDep, SessionDep

router = APIRouter()
ACCEPTED_CONTENT_TYPES = ("application/fhir+json", "application/json")
MAX_REQUEST_ID = 200
# Every integer a caller sends is bounded: far beyond any real page, well inside a database integer.
MAX_OFFSET = 1_000_000
PROFILE = "docs/fhir-referral-profile.md"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name: str, resource: str) -> dict[str, Any]:
    """The example Bundle from examples/, or the first resource of that type inside it."""
    path = EXAMPLES / name
    bundle = json.loads(path.read_text()) if path.exists() else {}
    if bundle.get("resourceType") == resource:
        return bundle  # type: ignore[no-any-return]
    found = [e["resource"] for e in bundle.get("entry", []) if e.get("resource", {}).get("resourceType") == resource]
    return found[0] if found else {}


def fhir_body(resource: str, description: str, example: str) -> dict[str, Any]:
    """A FHIR request body as the OpenAPI shows it: the resource's shape, the profile, a complete example."""
    return {"requestBody": {
        "required": True,
        "description": f"{description} The profile: [{PROFILE}]({PROFILE}) (resources, codes, extensions, errors).",
        "content": {FHIR_JSON: {
            "schema": {"$ref": f"#/components/schemas/{resource}"},
            "examples": {example.removesuffix(".json"): {"summary": f"from examples/{example}",
                                                         "value": _example(example, resource)}},
        }},
    }}


REFERRAL_BODY = fhir_body("Bundle", "A referral: a transaction or collection Bundle (ServiceRequest, Patient, "
                          "Consent, the DASH QuestionnaireResponse, …).", "gp-referral.json")
MESSAGE_BODY = fhir_body("Bundle", "A referral as a FHIR message Bundle, MessageHeader first (as in BaRS).",
                         "ed-high-risk-message.json")
CONSENT_BODY = fhir_body("Consent", "The survivor's consent as it now stands.", "gp-referral.json")
SUBMIT_ERRORS = errors(400, 403, 404, 409, 413, 415, 422)


async def require_client(bearer: BearerCredential, x_api_key: ApiKeyCredential, request: Request,
                         _oauth2: Annotated[str | None, Depends(OAUTH2)]) -> ApiClient:
    """The EHR client holding this API key, or an unexpired access token from ``POST /oauth2/token``.
    An API key is trusted for ``client_cache_seconds``, never past its expiry; changing a client through
    the ops API empties the cache at once (``services.intake.clients``). Access tokens are checked every
    time. Only a look-up opens a session (its own, closed before the handler runs): a cached key costs
    no session at all, the common case under load (issue 9)."""
    key = presented_key(bearer, x_api_key)
    digest = hash_api_key(key)
    known: TTLCache[str, ApiClient] = request.app.state.client_keys
    if (client := known.get(digest)) is not None and client.usable():
        return client
    by_token = key.startswith(f"{ACCESS_TOKEN_PREFIX}_")
    runtime: Runtime = request.app.state.runtime
    async with runtime.db.session() as session:
        if by_token:
            client = await client_for_access_token(session, digest)
        else:
            client = (await session.exec(select(ApiClient).where(ApiClient.key_hash == digest))).first()
        if client is not None:
            # Out of the session (with its ODS codes, loaded with it): other requests read a cached
            # client without a session, and a rollback elsewhere must not expire it.
            session.expunge(client)
    if client is None or not client.usable():
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Unknown, expired or revoked API key.",
                            headers={"WWW-Authenticate": "Bearer"})
    if not by_token:
        known[digest] = client
    return client


ClientDep = Annotated[ApiClient, Depends(require_client)]
RequestId = Annotated[str | None, Header(alias="X-Request-Id", description="Idempotency key for retries")]


def cipher(request: Request) -> FieldCipher:
    return request.app.state.cipher  # type: ignore[no-any-return]


async def read_fhir_json(request: Request, settings: IntakeSettings) -> dict[str, Any]:
    """The request body as a JSON object: 415 and 400 before anything is parsed as FHIR (a body over
    ``max_body_bytes`` is refused with 413 while it streams in: ``shared.protection``)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise FhirError(415, [Issue("not-supported", "Send the resource as application/fhir+json.")])
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FhirError(400, [Issue("structure", f"The body is not valid JSON ({type(exc).__name__}).")]) from None
    if not isinstance(body, dict):
        raise FhirError(400, [Issue("structure", "The body must be a JSON object (a FHIR resource).")])
    return body


def idempotency_keys(request_id: str | None, bundle_identifier: str | None) -> list[str]:
    if request_id is not None and not 0 < len(request_id) <= MAX_REQUEST_ID:
        raise FhirError(400, [Issue("value", f"X-Request-Id must be 1 to {MAX_REQUEST_ID} characters.")])
    return [k for k in (bundle_identifier and f"bundle:{bundle_identifier}",
                        request_id and f"request-id:{request_id}") if k]


def fhir_response(answer: referrals.Answer) -> JSONResponse:
    headers = {"Location": answer.location} if answer.location else {}
    if answer.replayed:
        headers["X-Idempotent-Replay"] = "true"
    return FhirResponse(answer.resource, status_code=answer.status_code, headers=headers)


async def _submit(request: Request, client: ApiClient, request_id: str | None, endpoint: str) -> JSONResponse:
    try:
        answer = await _answer(request, client, request.app.state.runtime, request_id, endpoint)
    except FhirError as exc:
        # The FHIR issue type (structure, value, forbidden…): a fixed vocabulary, never the diagnostics.
        REFERRALS_REJECTED.labels(exc.issues[0].code if exc.issues else "unknown").inc()
        raise
    return fhir_response(answer)


async def _answer(request: Request, client: ApiClient, runtime: Runtime, request_id: str | None,
                  endpoint: str) -> referrals.Answer:
    """A submission: parsed, checked and stored. No dependency opens a session for it: a new referral
    goes to the group commit, and only a cancellation or a retry's replay opens one (issue 9)."""
    settings: IntakeSettings = runtime.settings  # type: ignore[assignment]
    body = await read_fhir_json(request, settings)
    parsed = parse_submission(parse_bundle(body, endpoint=endpoint), rules=settings.referral_rules(), body=body)
    if parsed.referrer_ods not in client.ods_codes:
        raise FhirError(403, [Issue("forbidden", f"This client may not refer for ODS code {parsed.referrer_ods}.",
                                    "ServiceRequest.requester")])
    keys = idempotency_keys(request_id, parsed.bundle_identifier)
    fingerprint = referrals.request_hash(endpoint, body)
    if isinstance(parsed, ParsedCancellation):
        async with runtime.db.session() as session:
            answer = await referrals.idempotent(
                runtime.db, session, client.id, keys, fingerprint,
                lambda: referrals.cancel(session, client, parsed),
            )
    else:
        new = referrals.new_referral(client, parsed, cipher(request), fingerprint)
        answer = await referrals.receive(request.app.state.referral_writer, runtime.db, client.id, keys, new)
        if not answer.replayed:
            REFERRALS_RECEIVED.labels(parsed.summary.risk_band.value).inc()
    return answer


@router.post(
    "/fhir/Bundle",
    tags=["fhir"],
    status_code=202,
    summary="Submit a referral (transaction or collection Bundle); answers with the Task that tracks it",
    description="A ServiceRequest with status `revoked` cancels an earlier referral (200, the cancelled Task).",
    response_class=FhirResponse,
    responses={**fhir_resource("Task", 202, "Received: the Task that tracks the referral"),
               **fhir_resource("Task", 200, "A retry's first answer again, or the cancelled Task"), **SUBMIT_ERRORS},
    openapi_extra=REFERRAL_BODY,
)
async def submit_bundle(request: Request, client: ClientDep, request_id: RequestId = None) -> JSONResponse:
    return await _submit(request, client, request_id, "bundle")


@router.post(
    "/fhir/$process-message",
    tags=["fhir"],
    status_code=202,
    summary="Submit a referral as a FHIR message (MessageHeader first, as in BaRS); answers with the Task",
    response_class=FhirResponse,
    responses={**fhir_resource("Task", 202, "Received: the Task that tracks the referral"),
               **fhir_resource("Task", 200, "A retry's first answer again, or the cancelled Task"), **SUBMIT_ERRORS},
    openapi_extra=MESSAGE_BODY,
)
async def process_message(request: Request, client: ClientDep, request_id: RequestId = None) -> JSONResponse:
    return await _submit(request, client, request_id, "message")


@router.put(
    "/fhir/Consent/{task_id}",
    tags=["fhir"],
    summary="Update the survivor's consent for a referral (the Consent id is the Task id)",
    description="Granting, narrowing, extending or withdrawing consent publishes `referral.consent.updated`.",
    response_class=FhirResponse,
    responses={**fhir_resource("Consent", 200, "The Consent as stored"), **errors(400, 404, 409, 413, 415, 422)},
    openapi_extra=CONSENT_BODY,
)
async def update_consent(task_id: UUID, request: Request, client: ClientDep, runtime: RuntimeDep,
                         session: SessionDep, request_id: RequestId = None) -> JSONResponse:
    settings: IntakeSettings = runtime.settings  # type: ignore[assignment]
    body = await read_fhir_json(request, settings)
    consent = parse_consent(body)
    if consent.id is not None and consent.id != str(task_id):
        raise FhirError(400, [Issue("invalid", "Consent.id must match the id in the URL.", "Consent.id")])
    answer = await referrals.idempotent(
        runtime.db, session, client.id, idempotency_keys(request_id, None),
        referrals.request_hash(f"consent/{task_id}", body),
        lambda: referrals.update_consent(session, client, task_id, consent, body,
                                         purge_after=timedelta(hours=settings.withdrawal_purge_hours)),
    )
    return fhir_response(answer)


@router.get("/fhir/Task/{task_id}", tags=["fhir"], summary="The Task that tracks a referral",
            response_class=FhirResponse, responses={**fhir_resource("Task"), **errors(404)})
async def read_task(task_id: str, client: ClientDep, session: SessionDep) -> JSONResponse:
    referral = await referrals.own_referral(session, client, task_id)
    return FhirResponse(task_resource(referral))


@router.get("/fhir/Task", tags=["fhir"],
            summary="Search this client's Tasks: by the referral they are based on, or `_lastUpdated=gt<instant>`",
            response_class=FhirResponse, responses={**fhir_resource("Bundle", description="A searchset Bundle of Tasks"),
                                                    **errors(400)})
async def search_tasks(
    request: Request,
    client: ClientDep,
    session: SessionDep,
    based_on: Annotated[str | None, Query(alias="based-on", description="ServiceRequest/<id> or <id>")] = None,
    based_on_identifier: Annotated[
        str | None, Query(alias="based-on:identifier", description="the EHR's referral id, system|value")
    ] = None,
    last_updated: Annotated[list[str] | None, Query(alias="_lastUpdated")] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=200)] = 50,
    offset: Annotated[int, Query(alias="_offset", ge=0, le=MAX_OFFSET)] = 0,
) -> JSONResponse:
    # Oldest change first, so a poller can walk forward with _lastUpdated=gt<last seen>.
    statement = select(Referral).where(Referral.client_id == client.id)
    if based_on is not None:
        try:
            statement = statement.where(Referral.id == UUID(based_on.removeprefix("ServiceRequest/")))
        except ValueError:
            statement = statement.where(False)  # type: ignore[arg-type] - no referral has that id
    if based_on_identifier is not None:
        statement = statement.where(Referral.service_request_identifier == based_on_identifier)
    for value in last_updated or []:
        try:
            statement = statement.where(last_updated_condition(col(Referral.last_updated), value))
        except InvalidSearch as exc:
            raise FhirError(400, [Issue("invalid", str(exc), "_lastUpdated")]) from None
    rows = (await session.exec(
        statement.order_by(col(Referral.last_updated), col(Referral.id)).offset(offset).limit(count + 1)
    )).all()
    total = (await session.exec(select(func.count()).select_from(statement.subquery()))).one()
    links = [{"relation": "self", "url": str(request.url)}]
    if len(rows) > count:
        links.append({"relation": "next", "url": str(request.url.include_query_params(_offset=offset + count))})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [{"fullUrl": f"Task/{r.id}", "resource": task_resource(r), "search": {"mode": "match"}}
                  for r in rows[:count]],
    }
    return FhirResponse(bundle)


@router.get("/fhir/metadata", tags=["fhir"], summary="The CapabilityStatement: what intake supports",
            response_class=FhirResponse, responses=fhir_resource("CapabilityStatement"))
async def metadata(runtime: RuntimeDep) -> JSONResponse:
    settings: IntakeSettings = runtime.settings  # type: ignore[assignment]
    return FhirResponse(capability_statement(settings))


async def accepted_offer(session: AsyncSession, case_id: UUID, organisation_id: str) -> AcceptedOffer | None:
    """The organisation's accepted offer for the case that still stands, if notify has announced one."""
    return (await session.exec(select(AcceptedOffer).where(
        AcceptedOffer.case_id == case_id, AcceptedOffer.organisation_id == organisation_id,
        col(AcceptedOffer.stopped_at).is_(None)).limit(1))).first()


@router.get(
    "/internal/referrals/{case_id}/handoff",
    tags=["internal"],
    response_model=None,
    summary="Identifying details for a handoff (notify only; every read is audited)",
    description="Intake checks for itself, at release, that the named organisation holds an accepted offer "
                "for the case (as notify announced it on the bus; otherwise 409 with the problem type "
                f"`{NOT_ACCEPTED}`), and its own, authoritative consent (or the recorded safeguarding basis) "
                "for that organisation and the kind of service that accepted: 410 once consent is withdrawn or "
                "the data purged, 403 outside the consent's scope (both with the problem type "
                f"`{CONSENT_REFUSAL}`), 409 for a consent version intake never issued. Only notify's "
                "service credential is accepted.",
    responses=errors(403, 404, 409, 410),
)
async def read_handoff_details(
    case_id: UUID,
    organisation_id: Annotated[str, Query(min_length=1, max_length=80)],
    service_type: Annotated[str, Query(min_length=1, max_length=40)],
    consent_version: Annotated[int, Query(ge=1, description="the consent version the caller decided on")],
    runtime: RuntimeDep,
    session: SessionDep,
    caller: NotifyCaller,
    request: Request,
    by_and_for: bool = False,
) -> dict[str, Any] | JSONResponse:
    async with runtime.db.transaction(session):
        referral = await session.get(Referral, case_id)
        if referral is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such referral.")
        accepted = await accepted_offer(session, case_id, organisation_id)
        if accepted is None:
            return problem(status.HTTP_409_CONFLICT, f"Organisation {organisation_id} holds no accepted offer for this "
                           "case (or was told to stop contact).", type=NOT_ACCEPTED)
        # What was accepted decides the consent scope, not what the caller says.
        if accepted.service_type is not None:
            service_type, by_and_for = accepted.service_type, accepted.by_and_for
        consent = referrals.current_consent(referral)
        if consent_version > consent.version:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                detail=f"Consent version {consent_version} was never issued (the latest is "
                                       f"{consent.version}).")
        code, basis = release_verdict(consent, service_type=service_type, by_and_for=by_and_for,
                                      organisation_id=organisation_id, now=utcnow())
        if code != status.HTTP_200_OK:
            return problem(code, basis, type=CONSENT_REFUSAL)
        if referral.purged_at is not None:
            return problem(status.HTTP_410_GONE, "The identifying data was purged: do not make contact.",
                           type=CONSENT_REFUSAL)
        details = json.loads(cipher(request).decrypt(referral.identifying, aad=referral.id.bytes))
        record(session, caller, "release-identifying-data", case_id=case_id,
               detail=f"to organisation {organisation_id}; {basis}; consent version {consent.version}", reason=basis)
    return {"case_id": str(case_id), "referrer_ods": referral.referrer_ods, "consent_version": consent.version,
            "release_basis": basis, **details}
