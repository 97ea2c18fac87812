"""Credentials and caller identity.

API keys are random, shown once, and stored only as a SHA-256 digest: the keys are long random
strings, so a fast hash is enough and lookups stay O(1). Every request resolves to a ``Caller`` so
that later authorisation rules (roles, scopes, rate limits) have one thing to look at.

Roles (issue 13), and the dependency that admits each: referrer, an EHR client limited to its ODS codes
(intake's ``ClientDep``: API key or private_key_jwt access token); provider, its own offers and handoffs
(notify's ``ProviderDep``); ops (``OpsCaller``); commissioner, reports only and never a case
(``OpsOrCommissioner``); service, internal routes only (``ServiceCaller``, or ``service_from(...)`` to name
the services a route admits). Who may call every route: ``tests/integration/authz_table.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
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
    # Reports only, never a case: an ops-user credential whose role is "commissioner".
    commissioner = "commissioner"


@dataclass(frozen=True)
class Caller:
    kind: CallerKind
    id: str
    scopes: frozenset[str] = field(default_factory=frozenset)


def generate_api_key(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


# Dependencies are async: FastAPI runs a plain function in its thread pool, a hop per request for nothing.
# FastAPI's security classes read the credential, so the OpenAPI documents show how to authenticate.
# auto_error=False: a missing credential is our own 401 (problem+json or OperationOutcome), not theirs.
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="The API key as a bearer token.")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey",
                       description="The API key in the X-API-Key header (instead of the bearer token).")


BearerCredential = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
ApiKeyCredential = Annotated[str | None, Depends(API_KEY)]


async def bearer_or_api_key(bearer: BearerCredential, x_api_key: ApiKeyCredential) -> str:
    """The presented credential, from ``Authorization: Bearer …`` or ``X-API-Key`` (as a dependency)."""
    return presented_key(bearer, x_api_key)


def presented_key(bearer: HTTPAuthorizationCredentials | None, x_api_key: str | None) -> str:
    """The presented credential, for a dependency that takes ``BearerCredential`` and ``ApiKeyCredential``
    itself (one dependency fewer for FastAPI to solve on a hot path: issue 9)."""
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


async def optional_key(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    x_api_key: Annotated[str | None, Depends(API_KEY)],
) -> str | None:
    """The presented credential, if any: for public routes that show more to an authenticated caller."""
    if x_api_key:
        return x_api_key
    if bearer is not None and bearer.credentials.strip():
        return bearer.credentials.strip()
    return None


OptionalKey = Annotated[str | None, Depends(optional_key)]


# Internal endpoints take a service credential only: its own scheme, so the OpenAPI says which routes are
# for services (none of them is routed by the ingress).
SERVICE_BEARER = HTTPBearer(auto_error=False, scheme_name="serviceCredential",
                            description="Internal calls only: the calling Pathways service's own credential "
                                        "(never accepted on a public route).")
SERVICES = ("intake", "router", "directory", "notify")


@lru_cache(maxsize=8)
def service_credential_digests(configured: str) -> tuple[tuple[str, str], ...]:
    """``name:sha256-hex`` entries, comma-separated (several per service while one is rotated)."""
    entries = []
    for entry in configured.replace("\n", ",").split(","):
        name, _, digest = entry.strip().partition(":")
        if name and len(digest) == 64:
            entries.append((name, digest.lower()))
    return tuple(entries)


def service_credentials_setting(secrets_by_service: dict[str, list[str]] | dict[str, str]) -> str:
    """The ``PATHWAYS_SERVICE_CREDENTIALS`` value accepting these services' secrets (launcher, deploy, tests)."""
    entries = []
    for name, held in secrets_by_service.items():
        for secret in [held] if isinstance(held, str) else held:
            entries.append(f"{name}:{hash_api_key(secret)}")
    return ",".join(entries)


def identify_service(configured: str, presented: str) -> str | None:
    """Which service holds ``presented``: every accepted digest is compared in constant time."""
    digest = hash_api_key(presented).encode()
    found = None
    for name, expected in service_credential_digests(configured):
        if hmac.compare_digest(digest, expected.encode()):
            found = name
    return found


async def require_service(
    request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(SERVICE_BEARER)]
) -> Caller:
    """Internal endpoints: another Pathways service, named by its own credential."""
    if bearer is None or not bearer.credentials.strip():
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Missing service credential.",
                            headers={"WWW-Authenticate": "Bearer"})
    configured = request.app.state.settings.service_credentials.get_secret_value()
    name = identify_service(configured, bearer.credentials.strip())
    if name is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="This endpoint is for Pathways services only.")
    return Caller(CallerKind.service, name)


ServiceCaller = Annotated[Caller, Depends(require_service)]


def service_from(*names: str) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency admitting only the named services: each internal route says who may call it."""

    async def admitted(caller: ServiceCaller) -> Caller:
        if caller.id not in names:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail=f"This endpoint is for the {' and '.join(names)} service(s) only.")
        return caller

    return admitted


NotifyCaller = Annotated[Caller, Depends(service_from("notify"))]
RouterCaller = Annotated[Caller, Depends(service_from("router"))]


class OpsVerifier(Protocol):
    """Who holds this ops key, if anyone may use it now (each app sets one as ``app.state.verify_ops``)."""

    async def __call__(self, request: Request, key: str, session: AsyncSession) -> Caller | None: ...


async def ops_user(request: Request, key: PresentedKey, session: SessionDep) -> Caller:
    """Whoever holds this ops-user credential: an ops user or a commissioner (its role says which)."""
    verify: OpsVerifier = request.app.state.verify_ops
    caller = await verify(request, key, session)
    if caller is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Unknown, expired or revoked ops credential.",
                            headers={"WWW-Authenticate": "Bearer"})
    return caller


async def require_ops(caller: Annotated[Caller, Depends(ops_user)]) -> Caller:
    """Ops staff, each with a named credential (held by the directory: see ``shared.ops_users``).
    A commissioner's credential is refused (403): commissioners see reports, never a case."""
    if caller.kind is not CallerKind.ops:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="This endpoint is for ops users only.")
    return caller


async def require_ops_or_commissioner(caller: Annotated[Caller, Depends(ops_user)]) -> Caller:
    """Reports: ops users and commissioners (aggregates with small-number suppression, never a case)."""
    if caller.kind not in (CallerKind.ops, CallerKind.commissioner):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="This endpoint is for ops users and commissioners.")
    return caller


OpsCaller = Annotated[Caller, Depends(require_ops)]
OpsOrCommissioner = Annotated[Caller, Depends(require_ops_or_commissioner)]
