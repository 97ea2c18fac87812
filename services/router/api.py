"""Router API: the stored decision for a case."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, status
from sqlmodel import col, select

from services.router.store import RoutingDecision
from shared.auth import ServiceCaller
from shared.service import SessionDep

router = APIRouter(tags=["router"])


@router.get("/cases/{case_id}/decision", summary="How a case was routed, and why")
async def get_decision(case_id: UUID, session: SessionDep, _caller: ServiceCaller) -> dict[str, Any]:
    row = (
        await session.exec(
            select(RoutingDecision).where(RoutingDecision.case_id == case_id).order_by(col(RoutingDecision.created_at))
        )
    ).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No routing decision for that case.")
    return row.model_dump(mode="json")
