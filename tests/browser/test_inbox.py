"""The provider inbox in a real browser: a provider signs in with its own key, accepts an offer, reads the
handoff with the safe-contact instructions first, records contact made; the quick exit leaves nothing
identifying behind. axe-core checks every page; each page is saved under docs/screenshots/."""

from __future__ import annotations

import time
from typing import Any

import httpx

from services.launcher import System
from tests.browser.conftest import EHR_KEY, EXIT_URL, PROVIDER_KEY, refer, sign_in_by_keyboard, tab_to
from tests.integration.notify_world import withdrawal

IDENTIFYING = ("Alex", "Example", "1990-04-01", "LS7 9ZZ", "07700", "Synthetic Street")
API = {"Authorization": f"Bearer {PROVIDER_KEY}"}


def offer_for(system: System, case_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The sample provider's offer for the case, once routing made it."""
    deadline = time.monotonic() + timeout
    while True:
        offers = httpx.get(f"{system.url('notify')}/offers", headers=API).json()
        mine = [o for o in offers if o["case_id"] == case_id]
        if mine:
            return mine[0]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"no offer for {case_id}: {offers}"
        time.sleep(0.2)


def sign_in(page: Any, system: System) -> None:
    page.goto(f"{system.url('notify')}/inbox")
    assert page.url.endswith("/inbox/sign-in")
    page.get_by_label("Your organisation's Pathways key").fill(PROVIDER_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/inbox")


def assert_not_identifying(page: Any) -> None:
    assert not any(value in page.url or value in page.title() for value in IDENTIFYING), (page.url, page.title())


def test_a_provider_accepts_an_offer_reads_the_handoff_safe_contact_first_and_records_contact(
        page: Any, system: System, check_page: Any):
    case_id = refer(system, "browser-inbox-journey")
    offer = offer_for(system, case_id)

    page.goto(f"{system.url('notify')}/inbox")
    assert page.url.endswith("/inbox/sign-in")
    check_page(page, "inbox-sign-in")
    sign_in(page, system)
    assert "You are signed in." in page.content()
    check_page(page, "inbox-offers")

    page.locator(f'a[href="/inbox/offers/{offer["id"]}"]').click()
    page.wait_for_url(f"**/inbox/offers/{offer['id']}")
    assert page.get_by_role("button", name="Accept this offer").is_visible()
    assert not any(value in page.content() for value in IDENTIFYING)  # the offer is non-identifying
    assert_not_identifying(page)
    check_page(page, "inbox-offer")

    page.get_by_role("button", name="Accept this offer").click()
    page.wait_for_url(f"**/inbox/offers/{offer['id']}/handoff")
    assert_not_identifying(page)
    # Safe-contact instructions first: the first heading, above the survivor's details, and on screen.
    assert page.locator("main h1").first.inner_text().startswith("Before you make contact")
    safe = page.locator("#safe-contact")
    assert "Do not leave voicemail" in safe.inner_text() and safe.is_visible()
    survivor = page.get_by_role("heading", name="Survivor", exact=True)
    assert safe.bounding_box()["y"] < survivor.bounding_box()["y"]
    assert "Alex Example (synthetic)" in page.content()
    check_page(page, "inbox-handoff")

    # The quick exit stays on screen however far down the page is read.
    page.mouse.wheel(0, 5000)
    assert page.get_by_role("link", name="Quick exit").is_visible()
    box = page.get_by_role("link", name="Quick exit").bounding_box()
    assert 0 <= box["y"] < 900
    page.get_by_label("Contact made").check()
    page.get_by_role("button", name="Record outcome").click()
    page.wait_for_url(f"**/inbox/offers/{offer['id']}")
    assert "Recorded: contact made." in page.content()
    check_page(page, "inbox-case")
    recorded = httpx.get(f"{system.url('notify')}/offers/{offer['id']}", headers=API).json()
    assert recorded["status"] == "accepted" and recorded["outcome"] == "contact-made"


def test_quick_exit_leaves_nothing_identifying_in_history(page: Any, system: System):
    case_id = refer(system, "browser-inbox-exit")
    offer = offer_for(system, case_id)
    assert httpx.post(f"{system.url('notify')}/offers/{offer['id']}/accept", headers=API).status_code == 200
    visited: list[tuple[str, str]] = []
    page.on("load", lambda p: visited.append((p.url, p.title())))

    sign_in(page, system)
    page.goto(f"{system.url('notify')}/inbox/offers/{offer['id']}")
    page.get_by_role("link", name="Read the handoff").click()
    page.wait_for_url("**/handoff")
    assert "Alex Example (synthetic)" in page.content()

    page.get_by_role("link", name="Quick exit").click()
    page.wait_for_url(EXIT_URL)
    assert page.title() == "Weather"
    # Nothing any page put in history (URLs, titles) names the survivor.
    assert visited and not any(value in url or value in title for url, title in visited for value in IDENTIFYING)
    # location.replace: the handoff is no longer in history, and the session is gone, so Back shows a
    # sign-in page, never the survivor's details (pages are no-store: nothing comes from the cache).
    page.go_back()
    page.wait_for_load_state("load")
    assert "/handoff" not in page.url
    assert not any(value in page.content() for value in IDENTIFYING)
    assert page.url.endswith("/inbox/sign-in"), page.url


def test_escape_pressed_twice_is_a_quick_exit(page: Any, system: System):
    sign_in(page, system)
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    page.wait_for_url(EXIT_URL)
    page.goto(f"{system.url('notify')}/inbox")
    assert page.url.endswith("/inbox/sign-in")  # the session ended with the exit


def test_a_case_whose_consent_was_withdrawn_is_marked_and_its_details_are_gone(
        page: Any, system: System, check_page: Any):
    case_id = refer(system, "browser-inbox-withdrawn")
    offer = offer_for(system, case_id)
    notify = system.url("notify")
    assert httpx.post(f"{notify}/offers/{offer['id']}/accept", headers=API).status_code == 200
    assert httpx.get(f"{notify}/offers/{offer['id']}/handoff", headers=API).status_code == 200
    withdrawn = httpx.put(f"{system.url('intake')}/fhir/Consent/{case_id}", json=withdrawal(),
                          headers={"Authorization": f"Bearer {EHR_KEY}", "Content-Type": "application/fhir+json"})
    assert withdrawn.status_code == 200, withdrawn.text
    deadline = time.monotonic() + 30
    while not httpx.get(f"{notify}/offers/{offer['id']}", headers=API).json()["stop_contact"]:
        assert time.monotonic() < deadline, "the withdrawal did not reach notify"
        time.sleep(0.2)

    sign_in(page, system)
    assert "Consent withdrawn: do not contact" in page.content()
    page.goto(f"{notify}/inbox/offers/{offer['id']}")
    assert page.get_by_role("alert").inner_text().startswith("Consent withdrawn: do not contact")
    assert page.get_by_role("link", name="Read the handoff").count() == 0
    check_page(page, "inbox-withdrawn")
    page.goto(f"{notify}/inbox/offers/{offer['id']}/handoff")
    assert not any(value in page.content() for value in IDENTIFYING)




def test_the_inbox_works_by_keyboard_alone(page: Any, system: System):
    case_id = refer(system, "browser-inbox-keyboard")
    offer = offer_for(system, case_id)
    sign_in_by_keyboard(page, f"{system.url('notify')}/inbox", PROVIDER_KEY)
    page.wait_for_url("**/inbox")
    page.locator("main").focus()  # then on through the page from the top of the content
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('href')") == f"/inbox/offers/{offer['id']}":
            break
    else:
        raise AssertionError("the offer's link cannot be reached with the Tab key")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/inbox/offers/{offer['id']}")
    tab_to(page, "Accept this offer")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/inbox/offers/{offer['id']}/handoff")
    assert page.locator("main h1").first.inner_text().startswith("Before you make contact")


def test_an_unattended_page_leaves_the_screen_when_the_session_would_end(page: Any, system: System):
    page.clock.install()  # the page's timers run on a clock the test moves (no waiting)
    sign_in(page, system)
    page.clock.fast_forward("14:00")
    assert page.url.endswith("/inbox")
    page.clock.fast_forward("01:01")  # 15 minutes without a request: the default idle timeout
    page.wait_for_url("**/inbox/sign-in")
