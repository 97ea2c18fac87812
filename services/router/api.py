"""Router API: how a case was routed and why, and what the rules would do with a hypothetical case."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlmodel import select

from services.router.consumer import Router, decide, decision_row
from services.router.directory_client import DirectoryUnavailable
from services.router.gaps import GeographyReport, geography_report
from services.router.store import RoutedCase, decisions_for
from shared.audit import record_read
from shared.auth import NotifyCaller, OpsCaller
from shared.events import CaseSummary, ConsentScope, ConsentState, ConsentStatus
from shared.openapi import errors
from shared.service import RuntimeDep, SessionDep

router = APIRouter(tags=["router"])


async def get_router(request: Request) -> Router:
    return request.app.state.router  # type: ignore[no-any-return]


RouterDep = Annotated[Router, Depends(get_router)]


def note(decision: dict[str, Any]) -> str:
    """The decision in one line, for the referrer's Task business-status note."""
    offered = [s["name"] for s in decision["offer_to"]]
    parts = [f"offered to {', '.join(offered)}" if offered else (decision["no_offer_reason"] or "no offer made")]
    if decision["trigger"]:
        parts.insert(0, decision["trigger"])
    if decision["escalation"]:
        parts.append(f"escalated to ops: {decision['escalation']}")
    return "; ".join(parts)


class CaseDecisions(BaseModel):
    """A case's routing: where it stands, the ranked services per lane, and every decision with its reasons."""

    case_id: UUID
    state: str
    rule_version: str
    offered: list[str]
    accepted: list[str]
    ranking: dict[str, list[str]]
    note: str
    decisions: list[dict[str, Any]]


@router.get("/cases/{case_id}/decision", summary="How a case was routed, and why", responses=errors(404),
            response_model=CaseDecisions)
async def get_decision(case_id: UUID, session: SessionDep, caller: OpsCaller, runtime: RuntimeDep) -> dict[str, Any]:
    case = await session.get(RoutedCase, case_id)
    rows = await decisions_for(session, case_id)
    if case is None or not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No routing decision for that case.")
    decisions = [{**row.model_dump(mode="json"), "note": note(row.model_dump(mode="json"))} for row in rows]
    answer = {
        "case_id": str(case_id),
        "state": case.state,
        "rule_version": case.rule_version,
        "offered": case.offered,
        "accepted": case.accepted,
        "ranking": {lane: [s["service_id"] for s in services] for lane, services in case.lanes.items()},
        "note": decisions[-1]["note"],
        "decisions": decisions,
    }
    await record_read(runtime.db, session, caller, "read-routing-decision", case_id=case_id,
                      detail=f"{len(rows)} decision(s)")
    return answer


class ExplainRequest(BaseModel):
    """A hypothetical case: nothing is stored and nothing is offered."""

    summary: CaseSummary
    consent: ConsentState = Field(
        default_factory=lambda: ConsentState(status=ConsentStatus.granted, scopes=tuple(ConsentScope)),
        description="Defaults to consent granted for every kind of service.",
    )


@router.post("/explain", summary="What the rules would do with a hypothetical case (nothing is created)")
async def explain(body: ExplainRequest, session: SessionDep, router_state: RouterDep,
                  _caller: OpsCaller) -> dict[str, Any]:
    try:
        index = await router_state.cache.current()
    except DirectoryUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="No directory copy is held yet.") from exc
    decision, _ = await decide(session, router_state, summary=body.summary, consent=body.consent, index=index)
    # Built like a stored decision so the two read the same, but never added to a session.
    explained = decision_row(UUID(int=0), decision, kind="explain").model_dump(mode="json", exclude={"id", "case_id"})
    return {**explained, "note": note(explained), "ranking": {lane: [s.model_dump(mode="json") for s in services]
                                                              for lane, services in decision.lanes.items()},
            # Specialist national helplines named as advice beside the offers, with why (rule 7).
            "helplines": [s.model_dump(mode="json") for s in decision.helplines],
            "referrer_summary": decision.referrer_summary}


@router.get("/internal/reports/geography", response_model=GeographyReport, include_in_schema=True,
            summary="Raw gap-analysis counts and IDVA/MARAC coverage by area, for notify's reports (unsuppressed: "
                    "services only)", responses=errors(503))
async def geography(session: SessionDep, router_state: RouterDep, _caller: NotifyCaller) -> GeographyReport:
    try:
        index = await router_state.cache.current()
    except DirectoryUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="No directory copy is held yet.") from exc
    summaries = [CaseSummary.model_validate(s) for s in (await session.exec(select(RoutedCase.summary))).all()]
    return geography_report(summaries, index)
