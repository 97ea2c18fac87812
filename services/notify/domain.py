"""Notify's rules, as pure functions: deadlines, decline reasons, outcomes and what the referrer's Task
shows for them, safe-contact flags, which offers a consent still permits, and thin webhook payloads."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from shared.consent import consent_covers
from shared.events import ConsentState, RiskBand, TaskStatus
from shared.state_machine import StateMachine


def respond_by(created_at: datetime, risk_band: RiskBand, hours: dict[RiskBand, float]) -> datetime:
    """The offer's response deadline: shorter for higher risk."""
    return created_at + timedelta(hours=hours[risk_band])


class DeclineReason(StrEnum):
    no_capacity = "no-capacity"
    not_eligible = "not-eligible"
    out_of_area = "out-of-area"
    other = "other"


class Outcome(StrEnum):
    """What a provider reports after accepting; each flows to the referrer's Task."""

    contact_made = "contact-made"
    unable_to_contact = "unable-to-contact"
    survivor_engaged = "survivor-engaged"
    survivor_declined_support = "survivor-declined-support"
    closed = "closed"


# Outcomes that mean the provider reached the survivor (the first of them is "first contact" in the reports).
CONTACT_OUTCOMES = frozenset({Outcome.contact_made, Outcome.survivor_engaged, Outcome.survivor_declined_support})


class OfferStatus(StrEnum):
    offered = "offered"
    accepted = "accepted"
    declined = "declined"
    expired = "expired"
    withdrawn = "withdrawn"


# An offer is answered once: accepted or declined by the provider, expired by the deadline timer, or
# withdrawn (consent withdrawn, referral cancelled), which can also stop an accepted offer whose
# handoff was never read. Declined, expired and withdrawn are final.
OFFER_STATES = StateMachine.of(
    "offer",
    "status",
    {
        OfferStatus.offered: (OfferStatus.accepted, OfferStatus.declined, OfferStatus.expired, OfferStatus.withdrawn),
        OfferStatus.accepted: (OfferStatus.withdrawn,),
        OfferStatus.declined: (),
        OfferStatus.expired: (),
        OfferStatus.withdrawn: (),
    },
)


# What the provider reports after accepting, always forwards: no outcome yet → unable to contact →
# contact made → the survivor engaged or declined support → closed, which is final. Steps may be
# skipped (a provider may report "closed" straight away); nothing goes back, so a closed case
# never reopens the referrer's Task.
OUTCOME_STATES = StateMachine.of(
    "case outcome",
    "outcome",
    {
        None: tuple(Outcome),
        Outcome.unable_to_contact: (Outcome.contact_made, Outcome.survivor_engaged,
                                    Outcome.survivor_declined_support, Outcome.closed),
        Outcome.contact_made: (Outcome.survivor_engaged, Outcome.survivor_declined_support, Outcome.closed),
        Outcome.survivor_engaged: (Outcome.survivor_declined_support, Outcome.closed),
        Outcome.survivor_declined_support: (Outcome.closed,),
        Outcome.closed: (),
    },
    initial_label="not yet reported",
)


@dataclass(frozen=True)
class TaskView:
    """What the referrer's Task shows: its status, a coded business status with words, and why."""

    status: TaskStatus
    code: str
    text: str
    reason: str | None = None

    @classmethod
    def offered(cls, names: str, reason: str | None = None) -> TaskView:
        return cls(TaskStatus.requested, "offered", f"offered to {names}", reason)

    @classmethod
    def accepted(cls, name: str) -> TaskView:
        return cls(TaskStatus.accepted, "accepted", f"accepted by {name}")

    @classmethod
    def declined(cls, name: str) -> TaskView:
        return cls(TaskStatus.requested, "declined", f"declined by {name}; finding another service")

    @classmethod
    def expired(cls, name: str) -> TaskView:
        return cls(TaskStatus.requested, "no-response", f"no response from {name}; finding another service")

    @classmethod
    def stopped(cls, code: str, text: str, reason: str) -> TaskView:
        return cls(TaskStatus.cancelled, code, text, reason)


def task_for_outcome(outcome: Outcome, service_name: str) -> TaskView:
    """The referrer's Task after an outcome: work goes on until the survivor declines or the case closes."""
    if outcome is Outcome.survivor_declined_support:
        return TaskView(TaskStatus.completed, outcome.value, "survivor declined support", "the survivor declined support")
    if outcome is Outcome.closed:
        return TaskView(TaskStatus.completed, outcome.value, f"closed by {service_name}")
    return TaskView(TaskStatus.in_progress, outcome.value, outcome.value.replace("-", " "))


class SafeContactFlag(StrEnum):
    """Flags a provider's system can act on before anyone picks up a phone."""

    do_not_contact = "do-not-contact"
    no_voicemail = "no-voicemail"
    no_letters = "no-letters"
    no_text_messages = "no-text-messages"


_FLAG_PATTERNS: tuple[tuple[SafeContactFlag, re.Pattern[str]], ...] = (
    (SafeContactFlag.do_not_contact, re.compile(r"\b(do not|don't|never) (contact|call)\b(?! (before|after|between))", re.I)),
    (SafeContactFlag.no_voicemail, re.compile(r"\b(no|do not|don't|never)( leave( a)?)? voice ?mails?\b", re.I)),
    (SafeContactFlag.no_letters, re.compile(r"\b(no|do not|don't|never) (send )?(letters?|post)\b", re.I)),
    (SafeContactFlag.no_text_messages, re.compile(r"\b(no|do not|don't|never) (send )?(texts?|sms|text messages?)\b", re.I)),
)


# Intake's structured safe-contact rules (the referral profile's safe-contact extension) as flags.
_RULE_FLAGS = (
    ("do_not_contact", True, SafeContactFlag.do_not_contact),
    ("voicemail_allowed", False, SafeContactFlag.no_voicemail),
    ("letters_allowed", False, SafeContactFlag.no_letters),
)


def safe_contact(raw: Any, rules: Any = None) -> dict[str, Any]:
    """Safe-contact rules as a provider's system needs them: machine-actionable flags and the referrer's words.

    Flags come from intake's structured rules (``safe_contact_rules``: do_not_contact, voicemail_allowed,
    letters_allowed, …) and are also read from the instruction text, because a missed "no voicemail"
    can put a survivor in danger while an extra flag costs a provider one more careful step.
    """
    if isinstance(raw, dict):
        instructions = raw.get("instructions") or raw.get("text")
        given = {SafeContactFlag(f) for f in raw.get("flags", ()) if f in SafeContactFlag._value2member_map_}
    else:
        instructions = raw if isinstance(raw, str) else None
        given = set()
    if isinstance(rules, dict):
        given |= {flag for key, value, flag in _RULE_FLAGS if rules.get(key) is value}
    found = {flag for flag, pattern in _FLAG_PATTERNS if instructions and pattern.search(instructions)}
    flags = sorted(given | found)
    return {
        "do_not_contact": SafeContactFlag.do_not_contact in flags,
        "no_voicemail": SafeContactFlag.no_voicemail in flags,
        "flags": flags,
        "instructions": instructions,
    }


def still_permitted(consent: ConsentState, *, service_type: str, by_and_for: bool, organisation_id: str,
                    now: datetime) -> bool:
    """Does this consent still permit an open offer? A withdrawn consent permits none, except the MARAC on a
    recorded high-risk safeguarding basis, which never depended on consent."""
    permitted, _ = consent_covers(
        consent, service_type=service_type, by_and_for=by_and_for, organisation_id=organisation_id, now=now
    )
    return permitted


class WebhookEvent(StrEnum):
    offer_made = "offer.made"
    offer_withdrawn = "offer.withdrawn"
    offer_expired = "offer.expired"
    # The provider holds the handoff and must stop contact (consent withdrawn, referral cancelled).
    contact_stop = "offer.contact-stop"


def webhook_payload(event: WebhookEvent, *, offer_id: UUID, base_url: str, at: datetime) -> str:
    """The thin Standard Webhooks body: the event type, the offer id and where to read more.

    Never identifying data, nor even the case summary: the receiver fetches the offer with its API key.
    """
    links = {"offer": f"{base_url}/offers/{offer_id}"}
    if event is WebhookEvent.contact_stop:
        links["handoff"] = f"{base_url}/offers/{offer_id}/handoff"
    return json.dumps(
        {"type": event.value, "timestamp": at.isoformat(), "data": {"offer_id": str(offer_id), "links": links}},
        separators=(",", ":"),
    )
