"""Intake decides a release itself (issue 13): identifying data goes only to an organisation that holds an
accepted offer for the case (as notify announced it on the bus, never as the caller claims), only while
consent covers the kind of service that accepted, and only when notify itself asks."""

from __future__ import annotations

import json
from uuid import UUID, uuid4

import pytest

from services.intake.app import SAMPLE_CLIENT
from shared.bus import Bus
from shared.consent import CONSENT_REFUSAL, NOT_ACCEPTED
from shared.events import OfferAccepted, OfferContactStopped
from tests.conftest import EXAMPLES
from tests.harness import as_service, eventually
from tests.integration.conftest import EHR

NOTIFY = as_service("notify")


def handoff_path(case_id: str, organisation_id: str, service_type: str = "community-outreach") -> str:
    return (f"/internal/referrals/{case_id}/handoff?organisation_id={organisation_id}"
            f"&service_type={service_type}&consent_version=1")


@pytest.fixture
async def bus(nats_server):
    bus = Bus(nats_server.url, name="notify-stand-in")
    await bus.start()
    await bus.wait_ready(10)
    yield bus
    await bus.close()


async def accepted_by(bus: Bus, case_id: str, organisation_id: str, service_type: str) -> UUID:
    offer_id = uuid4()
    await bus.publish(OfferAccepted(case_id=UUID(case_id), offer_id=offer_id, service_id=f"{organisation_id}-svc",
                                    organisation_id=organisation_id, service_type=service_type))
    return offer_id


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_only_the_organisation_that_accepted_and_only_through_notify(intake, bus):
    body = json.loads((EXAMPLES / "gp-referral.json").read_text())
    case_id = (await intake.post("/fhir/Bundle", json=body, headers=EHR)).json()["id"]

    # Before any acceptance: refused, whoever is named.
    before = await intake.get(handoff_path(case_id, "org-a"), headers=NOTIFY)
    assert before.status_code == 409 and before.json()["type"] == NOT_ACCEPTED

    offer_id = await accepted_by(bus, case_id, "org-a", "community-outreach")

    async def released() -> bool:
        return (await intake.get(handoff_path(case_id, "org-a"), headers=NOTIFY)).status_code == 200

    await eventually(released)

    # Org A accepted; a call naming org B is refused, even from notify.
    other = await intake.get(handoff_path(case_id, "org-b"), headers=NOTIFY)
    assert other.status_code == 409 and other.json()["type"] == NOT_ACCEPTED

    # Only notify may ask: the other services' credentials, an EHR key, nothing at all.
    for service in ("router", "directory", "intake"):
        refused = await intake.get(handoff_path(case_id, "org-a"), headers=as_service(service))
        assert refused.status_code == 403, service
    ehr = {"Authorization": f"Bearer {SAMPLE_CLIENT['api_key']}"}
    assert (await intake.get(handoff_path(case_id, "org-a"), headers=ehr)).status_code == 403
    assert (await intake.get(handoff_path(case_id, "org-a"))).status_code == 401

    # Told to stop contact (consent withdrawn, referral cancelled): no more releases to org A.
    await bus.publish(OfferContactStopped(case_id=UUID(case_id), offer_id=offer_id, service_id="org-a-svc",
                                          organisation_id="org-a", reason="referral-cancelled"))

    async def stopped() -> bool:
        return (await intake.get(handoff_path(case_id, "org-a"), headers=NOTIFY)).status_code == 409

    await eventually(stopped)


async def test_the_kind_of_service_that_accepted_decides_the_consent_scope_not_the_caller(intake, bus):
    body = json.loads((EXAMPLES / "gp-referral.json").read_text())  # consent covers specialist services, not IDVA
    case_id = (await intake.post("/fhir/Bundle", json=body, headers=EHR)).json()["id"]
    await accepted_by(bus, case_id, "org-idva", "idva")

    async def refused_for_consent() -> bool:
        answer = await intake.get(handoff_path(case_id, "org-idva", "community-outreach"), headers=NOTIFY)
        return answer.status_code == 403 and answer.json()["type"] == CONSENT_REFUSAL

    # The caller claims a community service; intake knows an IDVA accepted, which consent does not cover.
    await eventually(refused_for_consent)
