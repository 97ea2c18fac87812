"""EHR clients, as ops manage them: register (bound to ODS organisation codes), list, read, rotate the
key, expire and revoke. The key is shown once, at registration and at each rotation; the lifecycle
and its audit records are ``shared.credentials``'."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field, HttpUrl, StringConstraints, model_validator
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.store import ApiClient, ApiClientOds
from shared.audit import record, record_read
from shared.auth import Caller, OpsCaller, hash_api_key
from shared.credentials import (
    CredentialPublic,
    EndAction,
    ExpireRequest,
    NewKey,
    RotateRequest,
    ShownOnce,
    Validity,
    change,
    find,
    issue,
    new_key,
)
from shared.egress import policy_for, registration_refusal
from shared.events import utcnow
from shared.openapi import errors
from shared.service import RuntimeDep, SessionDep

router = APIRouter(prefix="/ops/clients", tags=["ops"])
KEY_PREFIX = "pw_ehr"
KIND = "ehr-client"
LOCAL_HOSTS = ("localhost", "127.0.0.1")

# ODS organisation codes: 3 to 10 letters and digits (practices "A81001", trusts "RX1", sites "RX1AB").
OdsCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{3,10}$", to_upper=True, strip_whitespace=True)]
ClientId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,78}[a-z0-9]$")]


class ClientKeys(BaseModel):
    """Public keys for OAuth2 client credentials with private_key_jwt: an inline JWKS or a JWKS URL."""

    jwks: dict[str, Any] | None = Field(default=None, description="A JWKS of public RSA or EC P-256 keys, each "
                                        "with a kid (RS256/ES256 client assertions)")
    jwks_url: HttpUrl | None = Field(default=None, description="Where the client publishes its JWKS (https)")

    @model_validator(mode="after")
    def public_keys_only(self) -> ClientKeys:
        if self.jwks is not None and self.jwks_url is not None:
            raise ValueError("give a jwks or a jwks_url, not both")
        if self.jwks is not None:
            keys = self.jwks.get("keys")
            if not isinstance(keys, list) or not keys or len(keys) > 20:
                raise ValueError("jwks must hold 1 to 20 keys")
            if any(not isinstance(k, dict) or "d" in k or k.get("kty") not in ("RSA", "EC") or not k.get("kid")
                   for k in keys):
                raise ValueError("jwks keys must be public RSA or EC keys, each with a kid (never a private key)")
            try:
                jwt.PyJWKSet.from_dict(self.jwks)
            except jwt.PyJWTError as exc:
                raise ValueError(f"jwks is not a usable JWKS ({exc})") from None
        if self.jwks_url is not None and self.jwks_url.scheme != "https" and self.jwks_url.host not in LOCAL_HOSTS:
            raise ValueError("a jwks_url must use https")
        return self


class ClientCreate(Validity, ClientKeys):
    id: ClientId = Field(description="A stable identifier: lower-case letters, digits and hyphens")
    name: str = Field(min_length=1, max_length=200, description="The EHR system and the organisation running it")
    ods_codes: list[OdsCode] = Field(min_length=1, max_length=500)


class ClientPublic(CredentialPublic):
    id: str
    ods_codes: list[str]
    # private_key_jwt: the key ids registered inline, or the JWKS URL.
    jwks_kids: list[str] = []
    jwks_url: str | None = None

    @classmethod
    def of(cls, client: ApiClient) -> ClientPublic:
        kids = [k.get("kid", "") for k in (client.jwks or {}).get("keys", [])]
        return cls(id=client.id, ods_codes=client.ods_codes, jwks_kids=kids, jwks_url=client.jwks_url,
                   **cls.fields_of(client))


class ClientIssued(ClientPublic, ShownOnce):
    pass


async def register(session: AsyncSession, caller: Caller, body: ClientCreate, *, api_key: str | None = None,
                   now: datetime | None = None) -> ClientIssued:
    """A new EHR client with a new key (or ``api_key``, for the sample client only)."""
    if await session.get(ApiClient, body.id) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"An EHR client '{body.id}' already exists.")
    key = new_key(KEY_PREFIX) if api_key is None else NewKey(api_key, hash_api_key(api_key))
    client = ApiClient(id=body.id, name=body.name, key_hash=key.key_hash, jwks=body.jwks,
                       jwks_url=str(body.jwks_url) if body.jwks_url else None,
                       expires_at=body.expires_at(now or utcnow()),
                       ods=[ApiClientOds(client_id=body.id, ods_code=code) for code in sorted(set(body.ods_codes))])
    issue(session, caller, client, kind=KIND,
          subject=f"EHR client {client.id} for ODS {', '.join(client.ods_codes)}")
    await session.flush()
    return ClientIssued(api_key=key.api_key, **ClientPublic.of(client).model_dump())


async def _check_jwks_url(runtime: RuntimeDep, body: ClientKeys) -> None:
    """422 unless the JWKS URL is one intake may fetch (shared.egress: never a private, loopback or
    link-local address, by the name's current resolution; each fetch checks again)."""
    if body.jwks_url is not None and (why := await registration_refusal(str(body.jwks_url),
                                                                        policy_for(runtime.settings))):
        raise HTTPException(422, detail=f"jwks_url refused: {why}")


def forget_keys(request: Request) -> None:
    """The old key stops working at once: intake's cache of recently checked keys is emptied."""
    request.app.state.client_keys.clear()


async def _client(session: AsyncSession, client_id: str) -> ApiClient:
    return await find(session, ApiClient, client_id, f"EHR client '{client_id}'")


@router.post("", response_model=ClientIssued, status_code=201,
             summary="Register an EHR client for one or more ODS codes (the key is shown once)",
             responses=errors(409))
async def create_client(body: ClientCreate, runtime: RuntimeDep,
                        session: SessionDep, caller: OpsCaller) -> ClientIssued:
    await _check_jwks_url(runtime, body)
    async with runtime.db.transaction(session):
        return await register(session, caller, body)


@router.get("", response_model=list[ClientPublic], summary="Every EHR client, with its state and expiry")
async def list_clients(session: SessionDep, caller: OpsCaller, runtime: RuntimeDep) -> list[ClientPublic]:
    clients = [ClientPublic.of(c) for c in (await session.exec(select(ApiClient).order_by(col(ApiClient.id)))).all()]
    await record_read(runtime.db, session, caller, "list-ehr-clients", detail=f"{len(clients)} shown")
    return clients


@router.get("/{client_id}", response_model=ClientPublic, summary="One EHR client", responses=errors(404))
async def read_client(client_id: str, session: SessionDep, caller: OpsCaller, runtime: RuntimeDep) -> ClientPublic:
    client = ClientPublic.of(await _client(session, client_id))
    await record_read(runtime.db, session, caller, "read-ehr-client", detail=f"EHR client {client_id}")
    return client


@router.put("/{client_id}/keys", response_model=ClientPublic,
            summary="Replace the client's public keys for private_key_jwt (a JWKS or a JWKS URL; both empty: none)",
            responses=errors(404, 409))
async def replace_client_keys(client_id: str, body: ClientKeys, runtime: RuntimeDep,
                              session: SessionDep, caller: OpsCaller) -> ClientPublic:
    await _check_jwks_url(runtime, body)
    async with runtime.db.transaction(session):
        client = await _client(session, client_id)
        if client.revoked_at is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"EHR client '{client_id}' is revoked.")
        client.jwks = body.jwks
        client.jwks_url = str(body.jwks_url) if body.jwks_url else None
        session.add(client)
        kids = ", ".join(k["kid"] for k in (body.jwks or {}).get("keys", [])) or client.jwks_url or "none"
        record(session, caller, f"replace-keys-{KIND}", case_id=None, detail=f"EHR client {client_id}; keys {kids}")
    return ClientPublic.of(client)


@router.post("/{client_id}/rotate", response_model=ClientIssued,
             summary="A new key (shown once) and a new expiry; the old key stops working at once",
             responses=errors(404, 409))
async def rotate_client(client_id: str, request: Request, runtime: RuntimeDep,
                        session: SessionDep, caller: OpsCaller,
                        body: RotateRequest | None = None) -> ClientIssued:
    async with runtime.db.transaction(session):
        client = await _client(session, client_id)
        key = await change(session, caller, client, "rotate", kind=KIND, subject=f"EHR client {client_id}",
                           prefix=KEY_PREFIX, rotation=body)
    assert key is not None
    forget_keys(request)
    return ClientIssued(api_key=key, **ClientPublic.of(client).model_dump())


@router.post("/{client_id}/{action}", response_model=ClientPublic,
             summary="Expire (`expire`, optionally at a given time) or revoke (`revoke`, for good: its referrals "
                     "and Tasks stay); the key stops working at once",
             responses=errors(404, 409))
async def end_client(client_id: str, action: EndAction, request: Request, runtime: RuntimeDep,
                     session: SessionDep, caller: OpsCaller,
                     body: ExpireRequest | None = None) -> ClientPublic:
    async with runtime.db.transaction(session):
        client = await _client(session, client_id)
        await change(session, caller, client, action, kind=KIND, subject=f"EHR client {client_id}",
                     prefix=KEY_PREFIX, expiry=body)
    forget_keys(request)
    return ClientPublic.of(client)
