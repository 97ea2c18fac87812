"""The declared machines: what may follow what, what is final, and the sentence a 409 carries."""

from __future__ import annotations

import pytest

from services.intake.task import TASK_STATES
from services.notify.domain import OFFER_STATES, OUTCOME_STATES, OfferStatus, Outcome
from services.notify.store import ESCALATION_STATES, EscalationStatus
from shared.events import TaskStatus
from shared.state_machine import IllegalTransition


def test_an_offer_is_answered_once() -> None:
    assert OFFER_STATES.check(OfferStatus.offered, OfferStatus.accepted) is True
    assert OFFER_STATES.check(OfferStatus.accepted, OfferStatus.accepted) is False  # a repeat: nothing to announce
    assert OFFER_STATES.check(OfferStatus.accepted, OfferStatus.withdrawn) is True
    for final in (OfferStatus.declined, OfferStatus.expired, OfferStatus.withdrawn):
        assert OFFER_STATES.is_final(final)
        with pytest.raises(IllegalTransition, match=f"The offer is {final}, which is final: it cannot become accepted"):
            OFFER_STATES.check(final, OfferStatus.accepted)
    with pytest.raises(IllegalTransition, match="The offer is accepted: it cannot become declined"):
        OFFER_STATES.check(OfferStatus.accepted, OfferStatus.declined)


def test_outcomes_only_move_forwards_and_closed_is_final() -> None:
    assert all(OUTCOME_STATES.allows(None, outcome) for outcome in Outcome)
    assert OUTCOME_STATES.allows(Outcome.unable_to_contact, Outcome.contact_made)
    with pytest.raises(IllegalTransition, match="contact-made: it cannot become unable-to-contact"):
        OUTCOME_STATES.check(Outcome.contact_made, Outcome.unable_to_contact)
    assert OUTCOME_STATES.is_final(Outcome.closed) and not OUTCOME_STATES.is_final(None)
    assert OUTCOME_STATES.states == {o.value for o in Outcome}
    for outcome in Outcome:
        if outcome is not Outcome.closed:
            with pytest.raises(IllegalTransition, match="closed, which is final"):
                OUTCOME_STATES.check(Outcome.closed, outcome)


def test_the_task_follows_fhir_and_never_goes_back() -> None:
    order = [TaskStatus.requested, TaskStatus.accepted, TaskStatus.in_progress, TaskStatus.completed]
    for earlier, later in zip(order, order[1:], strict=False):
        assert TASK_STATES.allows(earlier, later) and not TASK_STATES.allows(later, earlier)
    # Staying put is a move while the business status changes (offered, declined by one and offered onwards).
    assert TASK_STATES.check(TaskStatus.requested, TaskStatus.requested) is True
    assert TASK_STATES.check(TaskStatus.completed, TaskStatus.completed) is False
    for final in (TaskStatus.completed, TaskStatus.rejected, TaskStatus.cancelled):
        assert TASK_STATES.is_final(final)
    with pytest.raises(IllegalTransition, match="The referral is completed, which is final: it cannot become cancelled"):
        TASK_STATES.check(TaskStatus.completed, TaskStatus.cancelled)


def test_an_escalation_stays_assigned() -> None:
    assert ESCALATION_STATES.check(EscalationStatus.open, EscalationStatus.assigned) is True
    assert ESCALATION_STATES.check(EscalationStatus.assigned, EscalationStatus.assigned) is True
    with pytest.raises(IllegalTransition):
        ESCALATION_STATES.check(EscalationStatus.assigned, EscalationStatus.open)
