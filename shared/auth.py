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

from fastapi import Depends, Header, HTTPException, Request, status
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


def bearer_or_api_key(
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """The presented credential, from ``Authorization: Bearer …`` or ``X-API-Key``."""
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="Missing credentials: send 'Authorization: Bearer <api key>' or 'X-API-Key'.",
        headers={"WWW-Authenticate": "Bearer"},
    )


PresentedKey = Annotated[str, Depends(bearer_or_api_key)]


def require_service(request: Request, token: PresentedKey) -> Caller:
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
