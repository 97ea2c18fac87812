"""The ops console and the reports in a real browser: an ops user finds an escalated case, reads the
router's explanation and assigns it to a service; issues a provider key and revokes it; issues a
commissioner's credential, with which the reports show small counts as "<5" (and the console refuses
it). axe-core checks every page; each page is saved under docs/screenshots/."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx

from services.launcher import System
from tests.browser.conftest import EHR_KEY, refer, sign_in_by_keyboard, tab_to
from tests.conftest import EXAMPLES

IDENTIFYING = ("Alex", "Example", "1990-04-01", "LS7 9ZZ", "07700", "Synthetic Street")


def ops_key(system: System) -> str:
    return system.environment()["PATHWAYS_OPS_KEY"]


def escalated_referral(system: System, identifier: str) -> str:
    """High risk with consent refused and no safeguarding basis: nothing may be offered, so ops must look."""
    bundle = json.loads((EXAMPLES / "gp-referral.json").read_text())
    bundle["identifier"]["value"] = identifier
    consent = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Consent")
    consent["status"] = "rejected"
    risk = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "RiskAssessment")
    risk["extension"][0]["valueInteger"] = 16
    posted = httpx.post(f"{system.url('intake')}/fhir/Bundle", json=bundle,
                        headers={"Authorization": f"Bearer {EHR_KEY}", "Content-Type": "application/fhir+json"})
    assert posted.status_code == 202, posted.text
    return str(posted.json()["id"])


def escalation_of(system: System, case_id: str, timeout: float = 30.0) -> dict[str, Any]:
    ops = {"Authorization": f"Bearer {ops_key(system)}"}
    deadline = time.monotonic() + timeout
    while True:
        queue = httpx.get(f"{system.url('notify')}/ops/escalations", headers=ops).json()
        found = [e for e in queue if e["case_id"] == case_id]
        if found:
            return found[0]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{case_id} was not escalated"
        time.sleep(0.2)


def sign_in(page: Any, system: System, realm: str, label: str, key: str) -> None:
    page.goto(f"{system.url('notify')}/{realm}")
    assert page.url.endswith(f"/{realm}/sign-in")
    page.get_by_label(label).fill(key)
    page.get_by_role("button", name="Sign in").click()


def flashed_key(page: Any) -> str:
    match = re.search(r"pw_[a-z]+_[A-Za-z0-9_-]+", page.locator(".flash").inner_text())
    assert match, page.locator(".flash").inner_text()
    return match.group(0)


def test_an_ops_user_assigns_an_escalated_case_and_revokes_a_credential(page: Any, system: System, check_page: Any):
    case_id = escalated_referral(system, "browser-console-escalated")
    escalation = escalation_of(system, case_id)

    page.goto(f"{system.url('notify')}/console")
    check_page(page, "console-sign-in")
    sign_in(page, system, "console", "Ops key", ops_key(system))
    page.wait_for_url("**/console")
    check_page(page, "console-home")

    page.get_by_role("link", name="Escalations", exact=True).click()
    page.wait_for_url("**/console/escalations")
    assert "consent refused and no recorded safeguarding basis" in page.content()
    check_page(page, "console-escalations")

    page.locator(f'a[href="/console/escalations/{escalation["id"]}"]').click()
    page.wait_for_url(f"**/console/escalations/{escalation['id']}")
    assert page.get_by_role("heading", name="The router's explanation").is_visible()
    assert page.locator("main .notice").count() == 0  # the router answered: its decisions are on the page
    assert page.get_by_role("heading", name=re.compile(r"^Initial decision")).is_visible()
    assert not any(value in page.content() for value in IDENTIFYING)  # ops see the summary, never identity
    check_page(page, "console-escalation")
    page.get_by_label("Service (directory id)").fill("aire-valley-da-outreach")
    page.get_by_role("button", name="Offer the case to this service").click()
    page.wait_for_url(f"**/console/escalations/{escalation['id']}")
    assert "Offered to" in page.locator(".flash").inner_text()
    assert "assigned" in page.locator("dl.summary").inner_text()
    page.get_by_label("Add a note").fill("Assigned while the survivor's consent is reviewed.")
    page.get_by_role("button", name="Save note").click()
    page.wait_for_url(f"**/console/escalations/{escalation['id']}")
    assert "Note added." in page.content()

    # A provider key issued and revoked through the console: it stops working at once.
    page.get_by_role("link", name="Credentials").click()
    page.wait_for_url("**/console/credentials")
    page.get_by_text("Issue a key to a provider").click()
    page.get_by_label("New key name for Aire Valley", exact=False).first.fill("browser-test")
    page.get_by_role("button", name="Issue key to Aire Valley", exact=False).first.click()
    page.wait_for_url("**/console/credentials")
    issued = flashed_key(page)
    assert httpx.get(f"{system.url('notify')}/offers", headers={"Authorization": f"Bearer {issued}"}).status_code == 200
    check_page(page, "console-credentials")
    # Rotated: a new key shown once; the old one stops at once.
    page.get_by_role("button", name=re.compile(r"^Rotate .* key browser-test$")).click()
    page.wait_for_url("**/console/credentials")
    rotated = flashed_key(page)
    assert rotated != issued
    assert httpx.get(f"{system.url('notify')}/offers", headers={"Authorization": f"Bearer {issued}"}).status_code == 401
    issued = rotated
    assert httpx.get(f"{system.url('notify')}/offers", headers={"Authorization": f"Bearer {issued}"}).status_code == 200
    page.get_by_role("button", name=re.compile(r"^Revoke .* key browser-test$")).click()
    page.wait_for_url("**/console/credentials")
    assert "Revoked" in page.locator(".flash").inner_text()
    assert httpx.get(f"{system.url('notify')}/offers", headers={"Authorization": f"Bearer {issued}"}).status_code == 401

    # Directory editing: a new organisation and service, paused, its coverage changed (not the sample's
    # services, which the inbox tests rely on).
    page.goto(f"{system.url('notify')}/console/directory")
    page.get_by_label("Id", exact=True).fill("browser-test-org")
    page.get_by_label("Name", exact=True).fill("Browser Test Organisation (synthetic)")
    page.get_by_label("deaf").check()
    page.get_by_role("button", name="Add organisation").click()
    page.wait_for_url("**/console/directory/browser-test-org")
    page.get_by_label("Id", exact=True).fill("browser-test-outreach")
    page.get_by_label("Name", exact=True).last.fill("Browser Test Outreach (synthetic)")
    page.get_by_label("Kind of service").last.select_option("community-outreach")
    page.get_by_label('Coverage (ONS codes, postcode districts or "national")').last.fill("E08000033")
    page.get_by_role("button", name="Add service").click()
    page.wait_for_url("**/console/directory/browser-test-org")
    page.get_by_label("Referrals").select_option("no")
    page.get_by_role("button", name="Save capacity of Browser Test Outreach (synthetic)").click()
    page.wait_for_url("**/console/directory/browser-test-org")
    assert "paused" in page.locator(".flash").inner_text()
    page.get_by_label('Coverage (ONS codes, postcode districts or "national")').first.fill("E08000033, E08000034")
    page.get_by_role("button", name="Save coverage of Browser Test Outreach (synthetic)").click()
    page.wait_for_url("**/console/directory/browser-test-org")
    found = httpx.get(f"{system.url('directory')}/services/browser-test-outreach").json()
    assert found["accepting"] is False and found["coverage"] == ["E08000033", "E08000034"]

    for name, path in (("console-directory", "/console/directory"),
                       ("console-organisation", "/console/directory/aire-valley-da"),
                       ("console-dead-letters", "/console/dead-letters"), ("console-webhooks", "/console/webhooks")):
        page.goto(f"{system.url('notify')}{path}")
        check_page(page, name)


def test_reports_show_small_counts_as_under_five_to_a_commissioner(browser: Any, page: Any, system: System,
                                                                   check_page: Any):
    refer(system, "browser-reports-referral")
    ops = {"Authorization": f"Bearer {ops_key(system)}"}
    deadline = time.monotonic() + 30
    while not any(t["key"] == "referrals-by-setting" and t["rows"]
                  for t in httpx.get(f"{system.url('notify')}/report-tables", headers=ops).json()["tables"]):
        assert time.monotonic() < deadline, "the referral never reached the reports"
        time.sleep(0.2)
    # An ops user issues a commissioner's credential through the console.
    sign_in(page, system, "console", "Ops key", ops_key(system))
    page.wait_for_url("**/console")
    page.goto(f"{system.url('notify')}/console/credentials")
    page.get_by_text("Issue a key to a new ops user or commissioner").click()
    page.get_by_label("Handle (names them in the audit trail)").fill("commissioner-browser")
    page.get_by_label("Role", exact=True).select_option("commissioner")
    page.get_by_role("button", name="Issue key", exact=True).last.click()
    page.wait_for_url("**/console/credentials")
    commissioner = flashed_key(page)

    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="en-GB")
    try:
        tab = context.new_page()
        sign_in(tab, system, "console", "Ops key", commissioner)
        assert "/console/sign-in" in tab.url and "not recognised" in tab.content()  # never the console
        sign_in(tab, system, "reports", "Ops or commissioner key", commissioner)
        tab.wait_for_url("**/reports")
        cells = tab.locator("main td").all_inner_texts()
        assert "<5" in cells
        assert not any(cell in {"1", "2", "3", "4"} for cell in cells)
        assert tab.locator("svg[role=img] title").first.text_content() == "Referrals by ICB"
        with tab.expect_download() as download:
            tab.get_by_role("link", name="Download “Referrals by setting” as CSV").click()
        text = Path(download.value.path()).read_text(encoding="utf-8")
        assert text.startswith("setting,referrals\n")
        assert not any(line.split(",")[-1] in {"1", "2", "3", "4"} for line in text.splitlines())
        check_page(tab, "reports")
    finally:
        context.close()


def test_an_escalated_case_is_assigned_by_keyboard_alone(page: Any, system: System):
    case_id = escalated_referral(system, "browser-console-keyboard")
    escalation = escalation_of(system, case_id)
    sign_in_by_keyboard(page, f"{system.url('notify')}/console", ops_key(system))
    page.wait_for_url("**/console")
    tab_to(page, "Escalations")
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/escalations")
    page.locator("main").focus()
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('href')") == f"/console/escalations/{escalation['id']}":
            break
    else:
        raise AssertionError("the escalated case cannot be reached with the Tab key")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/escalations/{escalation['id']}")
    page.locator("main").focus()
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "service_id":
            break
    else:
        raise AssertionError("the service field cannot be reached with the Tab key")
    page.keyboard.type("aire-valley-da-outreach")
    page.keyboard.press("Enter")  # submits the form the field is in
    page.wait_for_url(f"**/console/escalations/{escalation['id']}")
    assert "Offered to" in page.locator(".flash").inner_text()
