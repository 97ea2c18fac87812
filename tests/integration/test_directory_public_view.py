"""The directory's public routes (issue 13): anyone may find a service, but contact details and webhook
URLs are shown to ops only; a commissioner's credential is not an ops credential; Swagger UI and ReDoc are
served in development only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.directory.app import create_app
from services.directory.settings import DirectorySettings
from services.launcher import NatsServer
from shared.auth import hash_api_key
from tests.harness import as_service, running, service_auth

OPS_KEY = "pw_ops_test_key"
OPS = {"Authorization": f"Bearer {OPS_KEY}"}
ORG = {"id": "moorside-da", "name": "Moorside Domestic Abuse Service (sample)", "delivery": "poll",
       "webhook_url": "https://hooks.moorside.example/pathways",
       "contact_name": "Referrals lead (sample)", "contact_email": "referrals@moorside.example",
       "contact_phone": "+44 113 496 0000"}
SERVICE = {"id": "moorside-outreach", "organisation_id": "moorside-da", "name": "Outreach (sample)",
           "service_type": "community-outreach", "coverage": ["LS7"], "contact_name": "Duty worker (sample)",
           "contact_email": "duty@moorside.example", "contact_phone": "+44 113 496 0001"}
PRIVATE_VALUES = ("hooks.moorside.example", "referrals@moorside.example", "duty@moorside.example", "496 000",
                  "Referrals lead", "Duty worker")
PUBLIC_READS = ["/organisations", "/organisations/moorside-da", "/services/moorside-outreach", "/services?area=LS7",
                "/hsds", "/fhir/HealthcareService", "/fhir/HealthcareService/moorside-outreach"]


def settings(nats_url: str, database_url: str, **overrides: object) -> DirectorySettings:
    return DirectorySettings(nats_url=nats_url, database_url=database_url, **service_auth("directory"),
                             load_sample=True, sample_ops_key_hash=hash_api_key(OPS_KEY), **overrides)


@pytest.fixture
async def directory(nats_server: NatsServer, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(settings(nats_server.url, database_url))) as client:
        assert (await client.post("/organisations", json=ORG, headers=OPS)).status_code == 201
        assert (await client.post("/services", json=SERVICE, headers=OPS)).status_code == 201
        yield client


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_contact_details_and_webhook_urls_are_for_ops_only(directory):
    commissioner = (await directory.post("/ops-users", json={"id": "cara.commissioner", "role": "commissioner"},
                                         headers=OPS)).json()["api_key"]
    provider = (await directory.post("/organisations/moorside-da/keys", json={"name": "case-system"},
                                     headers=OPS)).json()["api_key"]
    for path in PUBLIC_READS:
        as_ops = await directory.get(path, headers=OPS)
        assert as_ops.status_code == 200, path
        shown = as_ops.text
        assert any(value in shown for value in PRIVATE_VALUES), path
        others = {"nobody": {}, "provider": {"Authorization": f"Bearer {provider}"},
                  "commissioner": {"Authorization": f"Bearer {commissioner}"}, "service": as_service("notify")}
        for who, headers in others.items():
            public = await directory.get(path, headers=headers)
            assert public.status_code == 200, (path, who)
            assert not [v for v in PRIVATE_VALUES if v in public.text], (path, who)
    # The keys stay in the public schema, emptied.
    organisation = (await directory.get("/organisations/moorside-da")).json()
    assert organisation["webhook_url"] is None and organisation["contact_email"] is None


async def test_a_commissioner_is_not_ops(directory):
    commissioner = (await directory.post("/ops-users", json={"id": "cara.commissioner", "role": "commissioner"},
                                         headers=OPS)).json()
    assert commissioner["role"] == "commissioner"
    headers = {"Authorization": f"Bearer {commissioner['api_key']}"}
    assert (await directory.get("/ops-users", headers=headers)).status_code == 403
    assert (await directory.post("/organisations", json={**ORG, "id": "other"}, headers=headers)).status_code == 403
    # The other services learn the role from the directory.
    who = await directory.post("/internal/ops/authenticate", json={"api_key": commissioner["api_key"]},
                               headers=as_service("notify"))
    assert who.json() == {"ops_user_id": "cara.commissioner", "name": "cara.commissioner", "role": "commissioner"}


async def test_swagger_ui_and_redoc_only_in_development(nats_server: NatsServer, database_url: str):
    async with running(create_app(settings(nats_server.url, database_url)), wait_for_bus=False) as production:
        assert (await production.get("/docs")).status_code == 404
        assert (await production.get("/redoc")).status_code == 404
        document = (await production.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert {"bearer", "apiKey", "serviceCredential"} <= set(schemes)
    async with running(create_app(settings(nats_server.url, database_url, environment="development")),
                       wait_for_bus=False) as development:
        assert (await development.get("/docs")).status_code == 200
