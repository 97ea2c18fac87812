"""Reports for ops and commissioners: aggregates only, small numbers suppressed, never a case.
Every table is also a CSV download, suppressed the same way."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel

from services.notify.reports import source
from services.notify.reports.figures import build_tables
from services.notify.reports.suppression import PublishedTable
from services.notify.settings import NotifySettings
from shared.audit import record
from shared.auth import OpsOrCommissioner
from shared.openapi import errors
from shared.service import Runtime, RuntimeDep

router = APIRouter(prefix="/report-tables", tags=["reports"])


class TableOut(BaseModel):
    key: str
    title: str
    row_header: str
    columns: list[str]
    rows: list[tuple[str, list[str]]]
    note: str


class ReportOut(BaseModel):
    tables: list[TableOut]
    gap_analysis_available: bool


async def published_tables(runtime: Runtime, state: Any) -> tuple[list[PublishedTable], bool]:
    """Every table, built from the latest figures (the router's gap analysis when it answers).

    Suppression across linked tables takes seconds for thousands of cases (bench/reports.py), so the
    tables are rebuilt only when a case, an offer or the gap analysis changed since the last build (kept
    in ``state``, the app's), and in a worker thread, so the service keeps answering meanwhile."""
    settings: NotifySettings = runtime.settings  # type: ignore[assignment]
    geography = await source.gap_facts(runtime.http, settings)
    async with runtime.db.session() as session:
        version = (await source.data_version(session), repr(geography))
        cached = getattr(state, "reports", None)
        if cached is not None and cached[0] == version:
            return cached[1], geography is not None
        cases = await source.case_facts(session)
        offers = await source.offer_facts(session)
    tables = await asyncio.to_thread(build_tables, cases, offers, geography)
    state.reports = (version, tables)
    return tables, geography is not None


def table_out(table: PublishedTable) -> dict[str, Any]:
    return {"key": table.key, "title": table.title, "row_header": table.row_header, "columns": list(table.columns),
            "rows": [(label, list(cells)) for label, cells in table.rows], "note": table.note}


@router.get("", response_model=ReportOut, summary="Every report table, with small numbers suppressed")
async def report_tables(request: Request, runtime: RuntimeDep, caller: OpsOrCommissioner,
                        response: Response) -> dict[str, Any]:
    tables, gaps = await published_tables(runtime, request.app.state)
    async with runtime.db.transaction() as session:
        record(session, caller, "read-reports", case_id=None)
    response.headers["Cache-Control"] = "no-store"
    return {"tables": [table_out(t) for t in tables], "gap_analysis_available": gaps}


@router.get("/{key}.csv", summary="One report table as CSV (suppressed like the page)",
            responses={**errors(404), 200: {"content": {"text/csv": {}}, "description": "The table as CSV"}},
            response_class=Response)
async def report_csv(key: str, request: Request, runtime: RuntimeDep, caller: OpsOrCommissioner) -> Response:
    tables, _ = await published_tables(runtime, request.app.state)
    table = next((t for t in tables if t.key == key), None)
    if table is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No report table '{key}'.")
    async with runtime.db.transaction() as session:
        record(session, caller, "download-report", case_id=None, detail=key)
    return Response(table.csv(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="pathways-{key}.csv"',
                             "Cache-Control": "no-store"})
