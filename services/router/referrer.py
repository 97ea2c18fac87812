"""What the referrer is told about a routing decision: the summary on its Task (``referrer_summary``) and,
where no offer is made, the Task status and coded reasons it leads to (``task_answer``; the mapping is in
docs/fhir-referral-profile.md). Built from the rules' own words and public helpline names only."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from services.router.rules import CaseFacts, Lane
from shared.events import ConsentStatus, TaskStatus
from shared.reference import ServiceType

if TYPE_CHECKING:
    from services.router.domain import Decision


class NoOffer(StrEnum):
    """Why no offer is made (the referrer's Task.statusReason code)."""

    consent_refused = "consent-refused"
    consent_withdrawn = "consent-withdrawn"
    consent_not_asked = "consent-not-asked"
    consent_expired = "consent-expired"
    high_risk_no_consent = "high-risk-no-consent"
    no_marac = "no-marac"
    no_eligible_service = "no-eligible-service"


@dataclass(frozen=True)
class TaskAnswer:
    """What the referrer's Task says when no offer is made: its status, a coded business status, and why."""

    status: TaskStatus
    code: str
    text: str
    reason_code: str
    reason: str


# No offer will be made, whatever happens next: the Task's final answer (FHIR ``rejected``: the request
# cannot be fulfilled; SDOH closed-loop practice, with a coded statusReason). The other no-offer codes
# leave the Task ``requested``: consent can still be recorded, or ops (told) can still place the case.
FINAL_NO_OFFER = frozenset({NoOffer.consent_refused, NoOffer.consent_withdrawn})


def task_answer(decision: Decision, *, high: bool) -> TaskAnswer | None:
    """Rules 5 and 7 for the referrer: the Task status a no-offer decision leads to (None with offers).

    - consent refused or withdrawn (lower risk): ``rejected``, ``no-offer``;
    - nothing eligible at lower risk (closed with the helpline as advice; ops told to fix the gap):
      ``rejected``, ``no-offer``;
    - consent not asked or expired: ``requested``, ``awaiting-consent`` (recording consent routes it);
    - high risk without an offer (no consent and no safeguarding basis, no MARAC, nothing eligible):
      ``requested``, ``escalated`` (ops review it and can assign a service by hand).
    """
    if decision.offer_to or decision.no_offer_code is None:
        return None
    code = NoOffer(decision.no_offer_code)
    reason = decision.no_offer_reason or "no offer made"
    if decision.advice:
        reason = f"{reason}. Advice: {decision.advice}"
    if code in FINAL_NO_OFFER or (code is NoOffer.no_eligible_service and not high):
        return TaskAnswer(TaskStatus.rejected, "no-offer", "no offer made", code, reason)
    if code in (NoOffer.consent_not_asked, NoOffer.consent_expired):
        return TaskAnswer(TaskStatus.requested, "awaiting-consent", "no offer made: awaiting consent", code, reason)
    return TaskAnswer(TaskStatus.requested, "escalated", "no offer made: escalated to ops", code, reason)


def consent_code(case: CaseFacts) -> NoOffer:
    """Rule 5: which kind of missing consent stops a lower-risk offer."""
    status = case.consent.status
    if status is ConsentStatus.refused:
        return NoOffer.consent_refused
    if status is ConsentStatus.withdrawn:
        return NoOffer.consent_withdrawn
    return NoOffer.consent_expired if case.consent_words == "expired" else NoOffer.consent_not_asked


KIND_WORDS = {
    Lane.idva: "an IDVA service",
    Lane.marac: "the area's MARAC",
    Lane.specialist: "a community specialist service",
    Lane.by_and_for: "a by-and-for service",
    Lane.helpline: "a national helpline",
}


def referrer_summary(decision: Decision, case: CaseFacts) -> str:
    """The decision as the referrer's Task shows it: which kinds of service were offered, whether a
    by-and-for service was chosen or none was available, helplines named as advice, and escalation.

    Built only from the rules' own words and public helpline names: never another organisation's internal
    details (who was excluded or passed over, and why; capacity; pauses) and nothing about the survivor
    beyond what the referrer sent."""
    parts: list[str] = []
    if decision.offer_to:
        kinds: list[str] = []
        offered = {s.service_id for s in decision.offer_to}
        for lane, services in decision.lanes.items():
            if services and services[0].service_id in offered:
                words = KIND_WORDS[lane]
                if lane is Lane.idva and services[0].service_type == ServiceType.health_idva:
                    words = "a health IDVA service"
                if lane is Lane.helpline and services[0].by_and_for:
                    words = "a specialist national helpline"
                elif lane is not Lane.by_and_for and services[0].by_and_for:
                    words += " (by-and-for)"
                kinds.append(words)
        parts.append("Offered to " + _and(kinds) + ("; high risk" if case.high else f"; {case.band} risk") + ".")
    else:
        parts.append(_sentence(decision.no_offer_reason or "no offer made"))
    if case.shared and case.wants_by_and_for and case.granted:  # without consent, none could be chosen
        chosen = any(set(s.by_and_for) & case.shared_set for s in decision.offer_to)
        parts.append("A by-and-for service matching what the survivor shared was chosen." if chosen
                     else "No by-and-for service matching what the survivor shared was available.")
    elif case.shared and not case.wants_by_and_for:
        parts.append("The survivor declined by-and-for services.")
    helplines = [h.name for h in decision.helplines]
    if decision.advice and not decision.offer_to and decision.advice not in helplines:
        helplines.insert(0, decision.advice)
    if helplines:
        parts.append(f"Helplines to mention: {', '.join(helplines)}.")
    if decision.escalation:
        parts.append("Pathways operations have been told and will follow up.")
    return " ".join(parts)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return f"{text[:1].upper()}{text[1:]}."
