"""Credentials and caller identity.

API keys are random, shown once, and stored only as a SHA-256 digest: the keys are long random
strings, so a fast hash is enough and lookups stay O(1). Every request resolves to a ``Caller`` so
that later authorisation rules (roles, scopes, rate limits) have one thing to look at.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Protocol

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.service import SessionDep


class CallerKind(StrEnum):
    ehr_client = "ehr-client"
    provider = "provider"
    service = "service"
    ops = "ops"


@dataclass(frozen=True)
class Caller:
    kind: CallerKind
    id: str
    scopes: frozenset[str] = field(default_factory=frozenset)


def generate_api_key(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


# FastAPI's security classes read the credential, so the OpenAPI documents show how to authenticate.
# auto_error=False: a missing credential is our own 401 (problem+json or OperationOutcome), not theirs.
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="The API key as a bearer token.")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey",
                       description="The API key in the X-API-Key header (instead of the bearer token).")


async def bearer_or_api_key(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    x_api_key: Annotated[str | None, Depends(API_KEY)],
) -> str:
    """The presented credential, from ``Authorization: Bearer …`` or ``X-API-Key``."""
    if x_api_key:
        return x_api_key
    if bearer is not None and bearer.credentials.strip():
        return bearer.credentials.strip()
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="Missing credentials: send 'Authorization: Bearer <api key>' or 'X-API-Key'.",
        headers={"WWW-Authenticate": "Bearer"},
    )


PresentedKey = Annotated[str, Depends(bearer_or_api_key)]


async def require_service(request: Request, token: PresentedKey) -> Caller:
    """Internal endpoints: only another Pathways service, holding the shared service token."""
    expected = request.app.state.settings.service_token.get_secret_value()
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="This endpoint is for Pathways services only.")
    return Caller(CallerKind.service, "pathways-service")


ServiceCaller = Annotated[Caller, Depends(require_service)]


class OpsVerifier(Protocol):
    """Who holds this ops key, if anyone may use it now (each app sets one as ``app.state.verify_ops``)."""

    async def __call__(self, request: Request, key: str, session: AsyncSession) -> Caller | None: ...


async def require_ops(request: Request, key: PresentedKey, session: SessionDep) -> Caller:
    """Ops staff, each with a named credential (held by the directory: see ``shared.ops_users``)."""
    verify: OpsVerifier = request.app.state.verify_ops
    caller = await verify(request, key, session)
    if caller is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Unknown, expired or revoked ops credential.",
                            headers={"WWW-Authenticate": "Bearer"})
    return caller


OpsCaller = Annotated[Caller, Depends(require_ops)]
