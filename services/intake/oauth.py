"""OAuth2 client credentials with a signed JWT client assertion (``private_key_jwt``, RFC 7523), the way
NHS application-restricted APIs authenticate systems (issue 13).

An EHR client registers public keys (an inline JWKS, or a JWKS URL) with ops. It signs a short-lived
assertion (RS256 or ES256; ``iss`` = ``sub`` = its client id, ``aud`` = this token endpoint, ``exp`` at most
five minutes ahead, a unique ``jti``) and exchanges it at ``POST /oauth2/token`` for an access token: an
opaque random string stored as its digest, accepted as a bearer on the FHIR routes until it expires. Each
``jti`` is stored (primary key) until its assertion expires, so a replay is refused on every replica.

PyJWT does the JOSE work (signature, algorithms, registered claims, JWK parsing): a maintained library,
already built on ``cryptography``, which the project uses for field encryption.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import jwt
from fastapi import APIRouter, Form, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2
from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.settings import IntakeSettings
from services.intake.store import AccessToken, ApiClient, ClientAssertionJti
from shared.audit import record
from shared.auth import Caller, CallerKind, generate_api_key, hash_api_key
from shared.events import utcnow
from shared.openapi import OWN_CONTENT
from shared.service import RuntimeDep, SessionDep

router = APIRouter(tags=["oauth2"])
TOKEN_PATH = "/oauth2/token"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS256", "ES256")
KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}
LEEWAY_SECONDS = 30
ACCESS_TOKEN_PREFIX = "pw_at"

# The OpenAPI's way of saying "get a bearer token with client credentials here" (documentation: the token
# itself is read with the other bearer credentials in ``services.intake.api.require_client``).
OAUTH2 = OAuth2(flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl=TOKEN_PATH, scopes={})),
                scheme_name="oauth2ClientCredentials", auto_error=False,
                description="OAuth2 client credentials with a signed JWT client assertion (private_key_jwt, "
                            "RS256/ES256): the access token is sent as `Authorization: Bearer`.")


def _token_error(description: str) -> dict[str, Any]:
    schema = {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"}, "error_description": {"type": "string"}}}
    return {"description": description, OWN_CONTENT: True, "content": {"application/json": {"schema": schema}}}


class TokenError(Exception):
    """An RFC 6749 error answer: ``invalid_client`` (401) or ``invalid_request``/``unsupported_grant_type``."""

    def __init__(self, error: str, description: str, status_code: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status_code = error, description, status_code

    def response(self) -> JSONResponse:
        headers = {"Cache-Control": "no-store"}
        if self.status_code == 401:
            headers["WWW-Authenticate"] = 'Bearer error="invalid_client"'
        return JSONResponse({"error": self.error, "error_description": self.description},
                            status_code=self.status_code, headers=headers)


def invalid_client(description: str) -> TokenError:
    return TokenError("invalid_client", description, 401)


class TokenIssued(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int


class JwksCache:
    """JWKS fetched from clients' URLs, reused for ``jwks_cache_seconds`` and fetched again once when a
    ``kid`` is not in it (the client rotated its keys)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._held: dict[str, tuple[float, dict[str, Any]]] = {}
        # The URL is the client's choice: fetched with the client for outside addresses (shared.egress:
        # public addresses only, checked at each connection, answers bounded), set while the service runs.
        self.http: httpx.AsyncClient | None = None

    async def get(self, url: str, *, fresh: bool = False) -> dict[str, Any]:
        held = self._held.get(url)
        if held and not fresh and held[0] > time.monotonic():
            return held[1]
        if self.http is None:
            raise invalid_client("The client's JWKS URL cannot be read now.")
        try:
            response = await self.http.get(url, timeout=5.0, follow_redirects=False)
            response.raise_for_status()
            jwks = response.json()
        except (httpx.HTTPError, ValueError):
            raise invalid_client("The client's JWKS URL cannot be read.") from None
        self._held[url] = (time.monotonic() + self.seconds, jwks)
        return jwks  # type: ignore[no-any-return]


def _key_in(jwks: dict[str, Any], kid: str | None, alg: str) -> Any | None:
    try:
        keys = jwt.PyJWKSet.from_dict(jwks).keys
    except jwt.PyJWTError:
        return None
    usable = [k for k in keys if k.key_id == kid and k.key_type == KEY_TYPES[alg]] if kid else keys
    if not kid and len(usable) != 1:
        return None  # without a kid, only a JWKS of one key is unambiguous
    return usable[0].key if usable and usable[0].key_type == KEY_TYPES[alg] else None


async def verification_key(request: Request, client: ApiClient, kid: str | None, alg: str) -> Any:
    """The client's public key named by ``kid`` (from its inline JWKS, or its JWKS URL)."""
    if client.jwks:
        key = _key_in(client.jwks, kid, alg)
    elif client.jwks_url:
        cache: JwksCache = request.app.state.jwks_cache
        key = _key_in(await cache.get(client.jwks_url), kid, alg)
        if key is None:
            key = _key_in(await cache.get(client.jwks_url, fresh=True), kid, alg)
    else:
        raise invalid_client("This client has no registered public keys (JWKS).")
    if key is None:
        raise invalid_client("The assertion's key (kid) is not in the client's JWKS.")
    return key


async def verify_assertion(request: Request, session: AsyncSession, settings: IntakeSettings,
                           assertion: str) -> tuple[ApiClient, dict[str, Any]]:
    """The client and the claims of a valid, unexpired, correctly addressed assertion (not yet replay-checked)."""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise invalid_client("The client assertion is not a well-formed JWT.") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise invalid_client(f"The assertion must be signed with one of {', '.join(ALGORITHMS)}.")
    client_id = unverified.get("iss")
    client = await session.get(ApiClient, client_id) if isinstance(client_id, str) else None
    if client is None or not client.usable():
        raise invalid_client("Unknown, expired or revoked client.")
    key = await verification_key(request, client, header.get("kid"), alg)
    try:
        claims = jwt.decode(
            assertion, key, algorithms=[alg], audience=settings.oauth_token_url, issuer=client.id,
            leeway=LEEWAY_SECONDS, options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise invalid_client("The client assertion has expired.") from None
    except jwt.InvalidAudienceError:
        raise invalid_client(f"The assertion's audience must be this token endpoint ({settings.oauth_token_url}).") from None
    except jwt.InvalidSignatureError:
        raise invalid_client("The assertion's signature does not verify with the client's key.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise invalid_client(f"The assertion lacks the {exc.claim} claim (iss, sub, aud, exp and jti are required).") from None
    except jwt.PyJWTError as exc:
        raise invalid_client(f"The client assertion is not valid ({type(exc).__name__}).") from None
    if claims["sub"] != client.id:
        raise invalid_client("The assertion's sub must be the client id, as its iss is.")
    if claims["exp"] > time.time() + settings.assertion_max_seconds + LEEWAY_SECONDS:
        raise invalid_client(f"The assertion must expire within {settings.assertion_max_seconds} seconds.")
    if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= 200:
        raise invalid_client("The assertion's jti must be a string of 1 to 200 characters.")
    return client, claims


@router.post(TOKEN_PATH, response_model=TokenIssued, summary="OAuth2 client credentials: exchange a signed JWT "
             "client assertion (private_key_jwt) for a short-lived access token",
             responses={400: _token_error("RFC 6749 error: invalid_request or unsupported_grant_type"),
                        401: _token_error("RFC 6749 error: invalid_client (the assertion was refused)")})
async def token(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    grant_type: Annotated[str | None, Form(max_length=100)] = None,
    client_assertion_type: Annotated[str | None, Form(max_length=100)] = None,
    client_assertion: Annotated[str | None, Form(max_length=20_000)] = None,
) -> JSONResponse:
    settings: IntakeSettings = runtime.settings  # type: ignore[assignment]
    try:
        # Missing fields are RFC 6749's invalid_request (400), in its own error format.
        if not grant_type or not client_assertion_type or not client_assertion:
            raise TokenError("invalid_request", "grant_type, client_assertion_type and client_assertion are required.")
        if grant_type != "client_credentials":
            raise TokenError("unsupported_grant_type", "Only grant_type=client_credentials is supported.")
        if client_assertion_type != JWT_BEARER:
            raise TokenError("invalid_request", f"client_assertion_type must be {JWT_BEARER}.")
        client, claims = await verify_assertion(request, session, settings, client_assertion)
        issued = await issue_token(runtime, session, client.id, claims, settings)
    except TokenError as exc:
        return exc.response()
    return JSONResponse(issued.model_dump(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def issue_token(runtime: RuntimeDep, session: AsyncSession, client_id: str, claims: dict[str, Any],
                      settings: IntakeSettings) -> TokenIssued:
    """Record the assertion's jti (a replay fails on the primary key, on any replica) and a new access token."""
    now = utcnow()
    token = generate_api_key(ACCESS_TOKEN_PREFIX)
    try:
        async with runtime.db.transaction(session):
            await session.exec(delete(ClientAssertionJti).where(  # type: ignore[call-overload]
                col(ClientAssertionJti.expires_at) < now - timedelta(seconds=LEEWAY_SECONDS)))
            if await session.get(ClientAssertionJti, (client_id, claims["jti"])) is not None:
                raise invalid_client("This assertion (jti) was already used.")
            session.add(ClientAssertionJti(client_id=client_id, jti=claims["jti"],
                                           expires_at=datetime.fromtimestamp(claims["exp"], UTC)))
            await session.exec(delete(AccessToken).where(col(AccessToken.expires_at) < now))  # type: ignore[call-overload]
            session.add(AccessToken(token_hash=hash_api_key(token), client_id=client_id,
                                    expires_at=now + timedelta(seconds=settings.access_token_seconds)))
            record(session, Caller(CallerKind.ehr_client, client_id), "issue-access-token", case_id=None,
                   detail=f"private_key_jwt; expires in {settings.access_token_seconds}s")
    except IntegrityError:
        raise invalid_client("This assertion (jti) was already used.") from None
    return TokenIssued(access_token=token, expires_in=settings.access_token_seconds)


async def client_for_access_token(session: AsyncSession, digest: str) -> ApiClient | None:
    """The client an unexpired access token was issued to, while the client itself is usable."""
    held = await session.get(AccessToken, digest)
    if held is None or held.expires_at <= utcnow():
        return None
    return await session.get(ApiClient, held.client_id)
