"""Offers made to the MARAC before the immigration firewall lose the survivor's immigration status when
notify's tables are upgraded; other offers keep what they may match on."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import sqlalchemy as sa

from services.notify.migrations import MIGRATIONS
from shared.migrations import drift, upgrade

# The offer table as revision 0003 left it (the columns this test writes and reads).
offer = sa.table(
    "offer", sa.column("id", sa.Uuid()), sa.column("case_id", sa.Uuid()),
    *(sa.column(name, sa.String()) for name in ("service_id", "service_name", "service_type", "organisation_id",
                                                  "status")),
    *(sa.column(name, sa.JSON()) for name in ("by_and_for", "summary", "reasons", "outcomes")),
    *(sa.column(name, sa.DateTime(timezone=True)) for name in ("created_at", "respond_by", "last_updated")),
)
SUMMARY = {"postcode_district": "LS7", "risk_band": "high", "setting": "gp",
           "needs": ["children-in-household", "no-recourse-to-public-funds"]}


async def test_existing_statutory_offers_lose_immigration_status_on_upgrade(database_url: str) -> None:
    db = MIGRATIONS.database(database_url)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    marac, idva = uuid4(), uuid4()
    try:
        await upgrade(db, MIGRATIONS, "0003")
        async with db.engine.begin() as conn:
            for offer_id, service_type in ((marac, "marac"), (idva, "idva")):
                await conn.execute(offer.insert().values(
                    id=offer_id, case_id=uuid4(), service_id=service_type, service_name=service_type,
                    service_type=service_type, organisation_id="org", by_and_for=[], status="offered",
                    summary=SUMMARY, reasons=["serves Leeds", "accepts no recourse to public funds"],
                    created_at=now, respond_by=now, last_updated=now, outcomes=[]))
        await upgrade(db, MIGRATIONS)
        async with db.engine.connect() as conn:
            rows = {row.id: row for row in await conn.execute(sa.select(offer.c.id, offer.c.summary, offer.c.reasons))}
        assert rows[marac].summary["needs"] == ["children-in-household"]
        assert rows[marac].reasons == ["serves Leeds"]
        assert rows[idva].summary["needs"] == SUMMARY["needs"] and len(rows[idva].reasons) == 2
        assert await drift(db, MIGRATIONS) == []
    finally:
        await db.dispose()
