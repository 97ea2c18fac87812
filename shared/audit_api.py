"""``GET /ops/audit/<service>``: ops query a service's audit trail by case, actor, action and time.

Each service that keeps a trail (intake, notify, directory) serves its own under its own path, so
that the ingress routes each to the service holding it. Ops credential only; newest first, paged by
cursor (a ``Link: rel="next"`` header). The trail holds codes and ids, never identifying data, so
nothing shown here identifies anyone; the query itself is audited."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import AwareDatetime, BaseModel
from sqlalchemy import and_, or_
from sqlmodel import col, select

from shared.audit import AuditRecord, record
from shared.auth import CallerKind, OpsCaller
from shared.openapi import errors
from shared.service import RuntimeDep, SessionDep

MAX_PAGE = 500


class AuditEntry(BaseModel):
    id: UUID
    at: datetime
    actor_kind: str
    actor_id: str
    action: str
    case_id: UUID | None
    detail: str
    reason: str
    # Its place in the hash chain (None for the few seconds before the sealer reaches it).
    seq: int | None
    hash: str | None


def _cursor(row: AuditRecord) -> str:
    return base64.urlsafe_b64encode(json.dumps([row.at.isoformat(), str(row.id)]).encode()).decode()


def _after(cursor: str) -> tuple[datetime, UUID]:
    try:
        at, record_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        after = datetime.fromisoformat(at)
        if after.tzinfo is None:
            raise ValueError("a cursor's time has its zone")
        return after, UUID(record_id)
    except (ValueError, TypeError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="Unknown cursor: use the one from the Link header.") from None


def audit_router(service: str) -> APIRouter:
    """The ops route that reads ``service``'s own audit trail."""
    router = APIRouter(prefix="/ops", tags=["ops"])

    @router.get(
        f"/audit/{service}", response_model=list[AuditEntry], responses=errors(400),
        summary=f"{service.capitalize()}'s audit trail, newest first: who did what, to which case, when and why",
        description="Filter by case, actor (handle, organisation or service id; `actor_kind` narrows it), action "
                    "and time (`since` inclusive, `until` exclusive, with a time zone). Paged: follow the "
                    "`Link: <…>; rel=\"next\"` header. Each query is itself audited. Records carry their place "
                    "in the hash chain; `pathways audit verify` checks the chain.",
    )
    async def read_audit_trail(
        request: Request,
        response: Response,
        runtime: RuntimeDep,
        session: SessionDep,
        caller: OpsCaller,
        case: Annotated[UUID | None, Query(description="the case (referral) id")] = None,
        actor: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
        actor_kind: Annotated[CallerKind | None, Query()] = None,
        action: Annotated[str | None, Query(min_length=1, max_length=60)] = None,
        since: Annotated[AwareDatetime | None, Query()] = None,
        until: Annotated[AwareDatetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> list[AuditEntry]:
        if since is not None and until is not None and since >= until:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="'since' must be before 'until'.")
        statement = select(AuditRecord)
        if case is not None:
            statement = statement.where(AuditRecord.case_id == case)
        if actor is not None:
            statement = statement.where(AuditRecord.actor_id == actor)
        if actor_kind is not None:
            statement = statement.where(AuditRecord.actor_kind == actor_kind)
        if action is not None:
            statement = statement.where(AuditRecord.action == action)
        if since is not None:
            statement = statement.where(col(AuditRecord.at) >= since)
        if until is not None:
            statement = statement.where(col(AuditRecord.at) < until)
        if cursor:
            at, after_id = _after(cursor)
            statement = statement.where(
                or_(col(AuditRecord.at) < at, and_(col(AuditRecord.at) == at, col(AuditRecord.id) < after_id)))
        async with runtime.db.transaction(session):
            rows = (await session.exec(
                statement.order_by(col(AuditRecord.at).desc(), col(AuditRecord.id).desc()).limit(limit + 1))).all()
            shown = [AuditEntry.model_validate(r, from_attributes=True) for r in rows[:limit]]
            filters = ", ".join(f"{name}={value}" for name, value in (
                ("actor", actor), ("actor_kind", actor_kind), ("action", action),
                ("since", since and since.isoformat()), ("until", until and until.isoformat())) if value is not None)
            record(session, caller, "read-audit-trail", case_id=case, detail=f"{len(shown)} shown; {filters}"[:500],
                   reason="ops query")
        if len(rows) > limit:
            next_url = request.url.include_query_params(cursor=_cursor(rows[limit - 1]))
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        return shown

    return router
