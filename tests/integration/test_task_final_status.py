"""No offer is a final answer (issue 12): the referrer's Task leaves ``requested`` for ``rejected``, with a
coded businessStatus and statusReason, wherever no offer will be made, and carries the router's
referrer-safe summary of its decision. The router's own rules decide; intake's consumer applies the
``case.status`` the router publishes, and the EHR reads the Task over FHIR. Synthetic people only.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest

from services.intake.consumer import on_case_status
from services.intake.store import Referral
from services.intake.task import STATUS_REASON_SYSTEM, TASK_STATES
from services.router.consumer import no_offer_status
from services.router.domain import route
from shared.events import (
    CareSetting,
    CaseStatus,
    CaseSummary,
    ConsentScope,
    ConsentState,
    ConsentStatus,
    RiskBand,
    TaskStatus,
    utcnow,
)
from shared.state_machine import IllegalTransition
from tests.integration.conftest import EHR
from tests.integration.test_intake_referrals import load
from tests.unit.router_directory import directory_index

INDEX = directory_index()


def case(band: RiskBand = RiskBand.standard, district: str = "LS7", **kw: Any) -> CaseSummary:
    return CaseSummary(postcode_district=district, risk_band=band, setting=CareSetting.gp, **kw)


def consent(status: ConsentStatus, **kw: Any) -> ConsentState:
    return ConsentState(status=status, scopes=tuple(ConsentScope) if status is ConsentStatus.granted else (), **kw)


async def referral_task(intake: Any) -> str:
    response = await intake.post("/fhir/Bundle", json=load("gp-referral.json"), headers=EHR)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def apply(intake: Any, event: CaseStatus) -> dict[str, Any]:
    async with intake.app.state.runtime.db.transaction() as session:
        await on_case_status(session, event, None)  # type: ignore[arg-type]
    task = await intake.get(f"/fhir/Task/{event.case_id}", headers=EHR)
    assert task.status_code == 200, task.text
    return dict(task.json())


def decided(task_id: str, summary: CaseSummary, state: ConsentState) -> CaseStatus:
    decision = route(summary, state, INDEX, open_offers={}, now=utcnow())
    assert decision.offer_to == []
    return no_offer_status(UUID(task_id), decision, high=summary.risk_band is RiskBand.high, consent=state)


# (case, consent, Task status, businessStatus code, statusReason code, words in the statusReason)
PATHS = [
    pytest.param(case(), consent(ConsentStatus.refused), "rejected", "no-offer", "consent-refused",
                 "Advice: national-da-helpline (sample)", id="consent refused, standard risk"),
    pytest.param(case(RiskBand.medium), consent(ConsentStatus.withdrawn), "rejected", "no-offer",
                 "consent-withdrawn", "consent withdrawn", id="consent withdrawn, medium risk"),
    pytest.param(case(district="ZZ9", needs=("bsl",)), consent(ConsentStatus.granted), "rejected", "no-offer",
                 "no-eligible-service", "Advice: national-da-helpline (sample)",
                 id="nothing eligible: closed with advice"),
    # Not final: recording consent routes the case; ops (told) can still place a high-risk case by hand.
    pytest.param(case(), consent(ConsentStatus.not_asked), "requested", "awaiting-consent", "consent-not-asked",
                 "ask the survivor and update consent", id="consent not asked"),
    pytest.param(case(RiskBand.high), consent(ConsentStatus.refused), "requested", "escalated",
                 "high-risk-no-consent", "no recorded safeguarding basis", id="high risk, no basis"),
    pytest.param(case(RiskBand.high, district="HX1"), consent(ConsentStatus.refused, safeguarding_basis=True),
                 "requested", "escalated", "no-marac", "no MARAC", id="high risk, no MARAC"),
]


@pytest.mark.parametrize(("summary", "state", "status", "business", "reason_code", "words"), PATHS)
async def test_each_no_offer_path_gives_the_task_its_answer_with_codes_and_the_summary(
        intake: Any, summary: CaseSummary, state: ConsentState, status: str, business: str, reason_code: str,
        words: str) -> None:
    task_id = await referral_task(intake)
    event = decided(task_id, summary, state)
    task = await apply(intake, event)
    assert task["status"] == status
    assert task["businessStatus"]["coding"][0]["code"] == business
    assert task["statusReason"]["coding"] == [{"system": STATUS_REASON_SYSTEM, "code": reason_code}]
    assert words in task["statusReason"]["text"]
    [note] = task["note"]
    assert note["text"] == event.routing_summary and note["text"].startswith("No offer made")

    # A repeat of the same answer changes nothing.
    again = await apply(intake, event.model_copy(update={"occurred_at": utcnow()}))
    assert (again["status"], again["statusReason"]) == (task["status"], task["statusReason"])


async def test_a_final_answer_is_final_in_the_database_and_the_summary_names_nothing_identifying(
        intake: Any) -> None:
    task_id = await referral_task(intake)
    task = await apply(intake, decided(task_id, case(), consent(ConsentStatus.refused)))
    assert task["status"] == "rejected"
    # News from elsewhere after the answer (an offer accepted somehow) leaves the Task where it is.
    late = CaseStatus(case_id=UUID(task_id), status=TaskStatus.accepted, business_status="accepted")
    assert (await apply(intake, late))["status"] == "rejected"
    async with intake.app.state.runtime.db.transaction() as session:
        referral = await session.get(Referral, UUID(task_id))
        assert referral is not None
        with pytest.raises(IllegalTransition, match="rejected, which is final"):
            await TASK_STATES.advance(session, referral, TaskStatus.accepted)
    # The referrer can no longer route it with a changed consent: only a withdrawal is accepted now.
    body = next(e["resource"] for e in load("gp-referral.json")["entry"] if e["resource"]["resourceType"] == "Consent")
    refused = await intake.put(f"/fhir/Consent/{task_id}", json=body, headers=EHR)
    assert refused.status_code == 409 and "rejected" in refused.text
    # Nothing the referral said about the survivor is in the Task's summary or reason.
    bundle = load("gp-referral.json")
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    shown = json.dumps({"note": task["note"], "statusReason": task["statusReason"]})
    for value in (patient["name"][0]["family"], patient["birthDate"], patient["address"][0]["postalCode"]):
        assert value not in shown


async def test_a_final_answer_given_on_a_replaced_consent_does_not_close_the_task(intake: Any) -> None:
    task_id = await referral_task(intake)
    # The referrer recorded a new consent (intake numbered it 2) while the router answered on version 1:
    # the router decides again on version 2, so the Task waits for that answer.
    async with intake.app.state.runtime.db.transaction() as session:
        referral = await session.get(Referral, UUID(task_id))
        assert referral is not None
        referral.consent_version = 2
        session.add(referral)
    stale = decided(task_id, case(), consent(ConsentStatus.refused, version=1))
    task = await apply(intake, stale)
    assert task["status"] == "requested"
