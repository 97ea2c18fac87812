"""The reports as web pages, for ops users and commissioners: every table (small numbers suppressed),
charts beside the tables they draw, and a CSV download of each table, suppressed the same way."""

from __future__ import annotations

from fastapi import Request, Response

from services.notify.console.realm import REPORTS, ReportsWeb
from services.notify.reports.api import published_tables
from services.notify.reports.charts import bar_chart
from shared.audit import record
from shared.service import RuntimeDep

router = REPORTS.router()


@router.get("")
async def reports(request: Request, runtime: RuntimeDep, caller: ReportsWeb) -> Response:
    tables, gaps_available = await published_tables(runtime, request.app.state)
    by_key = {t.key: t for t in tables}
    charts = {}
    if "referrals-by-icb" in by_key:
        charts["referrals-by-icb"] = bar_chart(by_key["referrals-by-icb"], by_key["referrals-by-icb"].columns[-1],
                                               title="Referrals by ICB")
    if "referrals-by-month" in by_key:
        charts["referrals-by-month"] = bar_chart(by_key["referrals-by-month"], "referrals",
                                                 title="Referrals by month", horizontal=False)
    async with runtime.db.transaction() as session:
        record(session, caller, "read-reports", case_id=None)
    return REPORTS.pages.render(request, "reports/reports.html", {
        "tables": tables, "charts": charts, "gaps_available": gaps_available})


@router.get("/{key}.csv")
async def download(key: str, request: Request, runtime: RuntimeDep, caller: ReportsWeb) -> Response:
    tables, _ = await published_tables(runtime, request.app.state)
    table = next((t for t in tables if t.key == key), None)
    if table is None:
        return REPORTS.error_page(request, 404, "There is no such report table.")
    async with runtime.db.transaction() as session:
        record(session, caller, "download-report", case_id=None, detail=key)
    return Response(table.csv(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="pathways-{key}.csv"'})
