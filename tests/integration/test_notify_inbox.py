"""The provider inbox (web pages served by notify) with real NATS, a real database, the real intake and a
stub directory: sign-in with the provider's own key, accept/decline through the API's own rules, the
handoff read from intake at view time with safe-contact first, outcomes, withdrawal, CSRF."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from services.launcher import NatsServer
from tests.harness import eventually
from tests.integration.notify_world import World, offer_for, provider, withdrawal, world_for

IDENTIFYING = ("Alex", "Example", "1990-04-01", "LS7 9ZZ", "07700")


@pytest.fixture
async def world(nats_server: NatsServer, database_url: str, tmp_path: Path, encryption_keys: str) -> AsyncIterator[World]:
    async with world_for(nats_server.url, database_url, tmp_path, encryption_keys) as w:
        yield w


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def title_of(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    assert match
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, key: str) -> str:
    page = await client.get("/inbox/sign-in")
    signed = await client.post("/inbox/sign-in", data={"csrf_token": csrf_of(page.text), "api_key": key})
    assert signed.status_code == 303, signed.text
    home = await client.get("/inbox")
    assert home.status_code == 200
    return home.text


async def case_offered(world: World, notify: httpx.AsyncClient, identifier: str) -> tuple[UUID, str]:
    case_id = await world.refer(identifier=identifier)
    await world.route(case_id, "outreach")
    offer = await offer_for(notify, "key-outreach", case_id)
    return case_id, offer["id"]


def assert_nothing_identifying(response: httpx.Response) -> None:
    """Titles and URLs end up in history: neither may carry anything about the survivor."""
    assert not any(value in title_of(response.text) for value in IDENTIFYING)
    assert not any(value in str(response.url) for value in IDENTIFYING)


async def test_a_provider_signs_in_accepts_reads_the_handoff_safe_contact_first_and_records_contact(world: World):
    async with world.notify() as notify:
        _, offer_id = await case_offered(world, notify, "inbox-journey")
        home = await sign_in(notify, "key-outreach")
        assert "Offers awaiting your decision (1)" in home and f"/inbox/offers/{offer_id}" in home
        assert not any(value in home for value in IDENTIFYING)

        page = await notify.get(f"/inbox/offers/{offer_id}")
        assert page.status_code == 200
        assert "Accept this offer" in page.text and not any(value in page.text for value in IDENTIFYING)
        assert_nothing_identifying(page)

        accepted = await notify.post(f"/inbox/offers/{offer_id}/accept", data={"csrf_token": csrf_of(page.text)})
        assert accepted.status_code == 303 and accepted.headers["location"] == f"/inbox/offers/{offer_id}/handoff"
        api_offer = (await notify.get(f"/offers/{offer_id}", headers=provider("key-outreach"))).json()
        assert api_offer["status"] == "accepted"

        handoff = await notify.get(f"/inbox/offers/{offer_id}/handoff")
        assert handoff.status_code == 200, handoff.text
        assert handoff.headers["cache-control"] == "no-store"
        assert_nothing_identifying(handoff)
        html = handoff.text
        safe = html.index('id="safe-contact"')
        assert "Do not leave voicemail" in html and safe < html.index("Alex") and safe < html.index("1990-04-01")
        assert html.index("Do not leave voicemail") < html.index("Alex")

        recorded = await notify.post(f"/inbox/offers/{offer_id}/outcomes",
                                     data={"csrf_token": csrf_of(html), "outcome": "contact-made"})
        assert recorded.status_code == 303
        case_page = await notify.get(recorded.headers["location"])
        assert "Recorded: contact made." in case_page.text
        api_offer = (await notify.get(f"/offers/{offer_id}", headers=provider("key-outreach"))).json()
        assert api_offer["outcome"] == "contact-made"

        # The same rules as the API: a step back is refused (409) and changes nothing.
        back = await notify.post(f"/inbox/offers/{offer_id}/outcomes",
                                 data={"csrf_token": csrf_of(case_page.text), "outcome": "unable-to-contact"})
        assert back.status_code == 409 and "text/html" in back.headers["content-type"]
        assert (await notify.get(f"/offers/{offer_id}", headers=provider("key-outreach"))).json()["outcome"] == "contact-made"


async def test_forms_without_the_csrf_token_or_with_bad_input_change_nothing(world: World):
    async with world.notify() as notify:
        _, offer_id = await case_offered(world, notify, "inbox-csrf")
        await sign_in(notify, "key-outreach")
        forged = await notify.post(f"/inbox/offers/{offer_id}/accept", data={})
        assert forged.status_code == 403
        page = await notify.get(f"/inbox/offers/{offer_id}")
        token = csrf_of(page.text)
        unknown = await notify.post(f"/inbox/offers/{offer_id}/decline", data={"csrf_token": token, "reason": "bored"})
        assert unknown.status_code == 422
        no_words = await notify.post(f"/inbox/offers/{offer_id}/decline", data={"csrf_token": token, "reason": "other"})
        assert no_words.status_code == 422
        assert (await notify.get(f"/offers/{offer_id}", headers=provider("key-outreach"))).json()["status"] == "offered"

        declined = await notify.post(f"/inbox/offers/{offer_id}/decline",
                                     data={"csrf_token": token, "reason": "no-capacity"})
        assert declined.status_code == 303
        offer = (await notify.get(f"/offers/{offer_id}", headers=provider("key-outreach"))).json()
        assert offer["status"] == "declined" and offer["status_reason"] == "no-capacity"


async def test_another_providers_offer_is_not_found_and_an_unknown_key_does_not_sign_in(world: World):
    async with world.notify() as notify:
        _, offer_id = await case_offered(world, notify, "inbox-other")
        page = await notify.get("/inbox/sign-in")
        refused = await notify.post("/inbox/sign-in", data={"csrf_token": csrf_of(page.text), "api_key": "pw_nobody"})
        assert refused.status_code == 401
        assert (await notify.get("/inbox")).status_code == 303
        await sign_in(notify, "key-idva")
        assert (await notify.get(f"/inbox/offers/{offer_id}")).status_code == 404
        assert (await notify.get(f"/inbox/offers/{offer_id}/handoff")).status_code == 404


async def test_a_withdrawn_consent_is_marked_and_the_details_are_gone(world: World):
    async with world.notify() as notify:
        case_id, offer_id = await case_offered(world, notify, "inbox-withdrawn")
        await sign_in(notify, "key-outreach")
        page = await notify.get(f"/inbox/offers/{offer_id}")
        await notify.post(f"/inbox/offers/{offer_id}/accept", data={"csrf_token": csrf_of(page.text)})
        assert "Alex" in (await notify.get(f"/inbox/offers/{offer_id}/handoff")).text
        assert (await world.update_consent(case_id, withdrawal())).status_code == 200

        async def stopped() -> bool:
            return bool((await notify.get(f"/offers/{offer_id}", headers=provider("key-outreach"))).json()["stop_contact"])

        await eventually(stopped)
        gone = await notify.get(f"/inbox/offers/{offer_id}/handoff")
        assert gone.status_code == 410 and "Consent withdrawn: do not contact" in gone.text
        assert not any(value in gone.text for value in IDENTIFYING)
        home = (await notify.get("/inbox")).text
        assert "Consent withdrawn: do not contact" in home


async def test_revoking_the_providers_key_ends_its_web_session(world: World):
    async with world.notify() as notify:
        await sign_in(notify, "key-outreach")
        world.directory.providers.pop("key-outreach")  # revoked in the directory
        response = await notify.get("/inbox")
        assert response.status_code == 303 and response.headers["location"] == "/inbox/sign-in"
        assert "no longer valid" in (await notify.get("/inbox/sign-in")).text


async def test_a_made_up_address_is_a_page_not_found(world: World):
    async with world.notify() as notify:
        await sign_in(notify, "key-outreach")
        response = await notify.get("/inbox/offers/not-an-id")
        assert response.status_code == 404 and "text/html" in response.headers["content-type"]


async def test_guessing_keys_through_the_sign_in_form_is_limited_like_the_api(world: World):
    async with world.notify(rate_limits={"failed-auth": "2/minute"}) as notify:
        page = await notify.get("/inbox/sign-in")
        for _ in range(2):
            answer = await notify.post("/inbox/sign-in", data={"csrf_token": csrf_of(page.text), "api_key": "pw_guess"})
            assert answer.status_code == 401
        third = await notify.post("/inbox/sign-in", data={"csrf_token": csrf_of(page.text), "api_key": "pw_prv_right"})
        assert third.status_code == 429 and "Retry-After" in third.headers  # not even looked at
        assert "text/html" in third.headers["content-type"] and "Too many attempts" in third.text
        # The same address guessing through the API is refused too: one count for both.
        assert (await notify.get("/offers", headers=provider("pw_guess"))).status_code == 429
