"""OAuth2 client credentials with a signed JWT client assertion (private_key_jwt), as NHS
application-restricted APIs authenticate systems (issue 13): an EHR client signs an assertion with its
private key; intake checks it against the client's registered JWKS and answers with a short-lived access
token, which the FHIR routes accept as a bearer. Every refusal is an RFC 6749 ``invalid_client``."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.intake.clients import ClientCreate, register
from services.intake.oauth import JWT_BEARER
from shared.credentials import SAMPLE_DATA
from tests.servers import serving

TOKEN_URL = "http://127.0.0.1:8001/oauth2/token"  # intake's default oauth_token_url
CLIENT = "gp-system-oauth"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private: Any, kid: str) -> dict[str, Any]:
    if isinstance(private, rsa.RSAPrivateKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


KEY = rsa_key()
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = rsa_key()


def assertion(*, key: Any = KEY, kid: str = "rsa-1", alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "exp": now + 120, "iat": now, "jti": str(uuid.uuid4())}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers={"kid": kid})


def form(client_assertion: str, **overrides: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
            "client_assertion": client_assertion, **overrides}


async def registered(intake, **keys: Any) -> None:
    app = intake.app
    async with app.state.runtime.db.transaction() as session:
        await register(session, SAMPLE_DATA, ClientCreate(id=CLIENT, name="GP system (synthetic)",
                                                          ods_codes=["Y00001"], **keys))


@pytest.fixture
async def with_jwks(intake):
    await registered(intake, jwks={"keys": [public_jwk(KEY, "rsa-1"), public_jwk(EC_KEY, "ec-1")]})
    return intake


async def refused(intake, body: dict[str, str]) -> str:
    answer = await intake.post("/oauth2/token", data=body)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client"
    return str(answer.json()["error_description"])


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_valid_assertion_gets_an_access_token_the_fhir_api_accepts(with_jwks):
    intake = with_jwks
    for signed in (assertion(), assertion(key=EC_KEY, kid="ec-1", alg="ES256")):
        answer = await intake.post("/oauth2/token", data=form(signed))
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        token = answer.json()
        assert token["token_type"] == "Bearer" and 0 < token["expires_in"] <= 300
        tasks = await intake.get("/fhir/Task", headers={"Authorization": f"Bearer {token['access_token']}"})
        assert tasks.status_code == 200 and tasks.json()["resourceType"] == "Bundle"
    assert (await intake.get("/fhir/Task", headers={"Authorization": "Bearer pw_at_not_issued"})).status_code == 401


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_replayed_assertion_is_refused(with_jwks):
    signed = assertion()
    assert (await with_jwks.post("/oauth2/token", data=form(signed))).status_code == 200
    assert "already used" in await refused(with_jwks, form(signed))


async def test_expired_wrong_audience_unknown_key_bad_signature_and_unknown_client_are_refused(with_jwks):
    intake = with_jwks
    now = int(time.time())
    assert "expired" in await refused(intake, form(assertion(exp=now - 120, iat=now - 300)))
    assert "within 300 seconds" in await refused(intake, form(assertion(exp=now + 3600)))
    assert "audience" in await refused(intake, form(assertion(aud="https://elsewhere.example/oauth2/token")))
    assert "kid" in await refused(intake, form(assertion(kid="not-registered")))
    assert "signature" in await refused(intake, form(assertion(key=OTHER_KEY)))  # right kid, wrong private key
    assert "Unknown" in await refused(intake, form(assertion(iss="nobody", sub="nobody")))
    assert "sub" in await refused(intake, form(assertion(sub="someone-else")))
    assert "jti" in await refused(intake, form(assertion(jti=None)))
    hs256 = jwt.encode({"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "exp": now + 60, "jti": "x"}, "an-hmac-secret-long-enough-for-hs256-32b",
                       algorithm="HS256")
    assert "RS256" in await refused(intake, form(hs256))
    wrong_grant = await intake.post("/oauth2/token", data=form(assertion(), grant_type="password"))
    assert wrong_grant.status_code == 400 and wrong_grant.json()["error"] == "unsupported_grant_type"
    wrong_type = await intake.post("/oauth2/token", data=form(assertion(), client_assertion_type="x"))
    assert wrong_type.status_code == 400 and wrong_type.json()["error"] == "invalid_request"
    empty = await intake.post("/oauth2/token", data={})
    assert empty.status_code == 400 and empty.json()["error"] == "invalid_request"


async def test_keys_from_a_jwks_url_and_a_revoked_client_s_tokens_stop(intake):
    from fastapi import FastAPI

    published = FastAPI()
    jwks = {"keys": [public_jwk(KEY, "rsa-1")]}

    @published.get("/jwks.json")
    async def keys() -> dict[str, Any]:
        return jwks

    async with serving(published) as server:
        await registered(intake, jwks_url=f"{server.url}/jwks.json")
        token = (await intake.post("/oauth2/token", data=form(assertion()))).json()["access_token"]
        # The client rotates its key: a new kid is fetched again from its URL.
        new_key = rsa_key()
        jwks["keys"].append(public_jwk(new_key, "rsa-2"))
        assert (await intake.post("/oauth2/token", data=form(assertion(key=new_key, kid="rsa-2")))).status_code == 200
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await intake.get("/fhir/Task", headers=bearer)).status_code == 200
    async with intake.app.state.runtime.db.transaction() as session:
        from services.intake.store import ApiClient
        from shared.credentials import revoke

        await revoke(session, await session.get(ApiClient, CLIENT))
    assert (await intake.get("/fhir/Task", headers=bearer)).status_code == 401


async def test_a_private_key_is_never_registered(intake):
    private = jwt.algorithms.RSAAlgorithm.to_jwk(KEY, as_dict=True)
    with pytest.raises(ValueError, match="never a private key"):
        ClientCreate(id="leaky", name="x", ods_codes=["Y00001"], jwks={"keys": [{**private, "kid": "k"}]})


async def test_the_openapi_declares_the_client_credentials_flow(intake):
    document = (await intake.get("/openapi.json")).json()
    scheme = document["components"]["securitySchemes"]["oauth2ClientCredentials"]
    assert scheme["flows"]["clientCredentials"]["tokenUrl"] == "/oauth2/token"
    assert {"oauth2ClientCredentials": []} in document["paths"]["/fhir/Bundle"]["post"]["security"]


async def test_a_jwks_url_inside_the_network_is_refused_at_registration_and_never_fetched():
    """SSRF: ops register the URL, but intake fetches it: never a private, loopback or link-local address
    (the cloud metadata service), neither when it is registered nor when it is fetched."""
    from types import SimpleNamespace

    from fastapi import HTTPException

    from services.intake.clients import ClientKeys, _check_jwks_url
    from services.intake.oauth import JwksCache, TokenError
    from services.intake.settings import IntakeSettings
    from shared.egress import external_client, policy_for

    production = IntakeSettings(environment="production")
    for url in ("https://169.254.169.254/latest/meta-data", "https://10.0.0.4/jwks.json", "https://localhost/jwks"):
        with pytest.raises(HTTPException) as refused:
            await _check_jwks_url(SimpleNamespace(settings=production), ClientKeys(jwks_url=url))
        assert refused.value.status_code == 422 and "Pathways does not call" in refused.value.detail
    from fastapi import FastAPI

    published = FastAPI()

    @published.get("/jwks.json")
    async def keys() -> dict[str, Any]:
        return {"keys": [public_jwk(KEY, "rsa-1")]}

    async with serving(published) as server:
        url = f"{server.url}/jwks.json"
        allowed = JwksCache(300)
        allowed.http = external_client(policy_for(IntakeSettings(egress_allowed_networks="127.0.0.0/8")))
        async with allowed.http:
            assert (await allowed.get(url))["keys"]  # the receiver is up and answers...
        refusing = JwksCache(300)
        refusing.http = external_client(policy_for(production))
        async with refusing.http:
            with pytest.raises(TokenError):  # ...but loopback is not called outside development
                await refusing.get(url)
