"""Notify's pure rules: safe-contact flags, the release decision's consent rule, backoff bounds,
what the referrer's Task shows for each outcome, and the HTTPS rule for endpoints."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from services.notify.domain import Outcome, TaskView, WebhookEvent, safe_contact, still_permitted, task_for_outcome, webhook_payload
from shared.delivery import endpoint_refusal, retry_delay
from shared.events import ConsentScope, ConsentState, ConsentStatus, TaskStatus

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("instructions", "flags"),
    [
        ("Safe to call 10:00-12:00 on weekdays only. Do not leave voicemail.", ["no-voicemail"]),
        ("Do not contact. Perpetrator monitors the phone.", ["do-not-contact"]),
        ("Do not contact before 6pm; no texts.", ["no-text-messages"]),
        ("No letters to the home address, never leave a voicemail", ["no-letters", "no-voicemail"]),
        ("Call any time.", []),
    ],
)
def test_safe_contact_flags_are_read_from_the_clinicians_words(instructions: str, flags: list[str]):
    rules = safe_contact(instructions)
    assert rules["flags"] == flags and rules["instructions"] == instructions
    assert rules["no_voicemail"] is ("no-voicemail" in flags)
    assert rules["do_not_contact"] is ("do-not-contact" in flags)


def test_structured_flags_from_intake_are_kept_and_unknown_ones_dropped():
    rules = safe_contact({"flags": ["do-not-contact", "carrier-pigeon"], "instructions": None})
    assert rules == {"do_not_contact": True, "no_voicemail": False, "flags": ["do-not-contact"], "instructions": None}
    assert safe_contact(None)["flags"] == []


def test_withdrawn_consent_stops_every_offer_but_the_marac_on_a_safeguarding_basis():
    withdrawn = ConsentState(status=ConsentStatus.withdrawn, scopes=(ConsentScope.idva,), safeguarding_basis=True)
    assert not still_permitted(withdrawn, service_type="idva", by_and_for=False, organisation_id="o", now=NOW)
    assert still_permitted(withdrawn, service_type="marac", by_and_for=False, organisation_id="o", now=NOW)
    narrowed = ConsentState(status=ConsentStatus.granted, scopes=(ConsentScope.idva,))
    assert not still_permitted(narrowed, service_type="community-outreach", by_and_for=False, organisation_id="o", now=NOW)


def test_backoff_grows_exponentially_is_jittered_and_capped():
    rng = random.Random(6)
    for attempt in range(1, 30):
        bound = min(60.0, 2.0 * 2 ** (attempt - 1))
        delay = retry_delay(attempt, base=2.0, cap=60.0, rng=rng)
        assert timedelta(seconds=bound / 2) <= delay <= timedelta(seconds=bound)
    assert len({retry_delay(3, base=2.0, cap=60.0, rng=rng) for _ in range(20)}) > 1


def test_outcomes_move_the_referrers_task():
    assert task_for_outcome(Outcome.contact_made, "X") == TaskView(TaskStatus.in_progress, "contact-made", "contact made")
    assert task_for_outcome(Outcome.unable_to_contact, "X").status is TaskStatus.in_progress
    declined = task_for_outcome(Outcome.survivor_declined_support, "X")
    assert declined.status is TaskStatus.completed and declined.reason == "the survivor declined support"
    assert task_for_outcome(Outcome.closed, "X").text == "closed by X"


def test_endpoints_must_be_https_outside_development():
    assert endpoint_refusal("https://provider.example.org/hooks", development=False) is None
    assert endpoint_refusal("http://provider.example.org/hooks", development=False) == "endpoint must use HTTPS"
    assert endpoint_refusal("http://127.0.0.1:9/hooks", development=True) is None
    assert endpoint_refusal("ftp://provider.example.org", development=True) == "endpoint must be an HTTPS URL"


def test_webhook_payload_is_thin():
    body = webhook_payload(WebhookEvent.contact_stop, offer_id=UUID(int=1), base_url="https://n", at=NOW)
    assert body == ('{"type":"offer.contact-stop","timestamp":"2026-11-22T10:00:00+00:00","data":{"offer_id":'
                    '"00000000-0000-0000-0000-000000000001","links":{"offer":"https://n/offers/00000000-0000-0000-0000-'
                    '000000000001","handoff":"https://n/offers/00000000-0000-0000-0000-000000000001/handoff"}}}')


def test_structured_safe_contact_rules_from_intake_become_flags():
    from services.notify.domain import safe_contact

    rules = {"do_not_contact": False, "voicemail_allowed": False, "letters_allowed": False, "safe_times": "10-12"}
    result = safe_contact("Safe times: 10-12.", rules)
    assert result["flags"] == ["no-letters", "no-voicemail"]
    assert result["no_voicemail"] is True and result["do_not_contact"] is False
    assert safe_contact(None, {"do_not_contact": True})["do_not_contact"] is True
