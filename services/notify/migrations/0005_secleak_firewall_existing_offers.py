"""Offers already made to a statutory body (the MARAC) lose the survivor's immigration status (issue 13's
immigration firewall, ``shared.firewall``): from now on such an offer is made without it, and this removes
it from the offers made before. Data only; the tables do not change.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 23:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# As shared.firewall had them when this revision was written (a revision never changes with the code).
STATUTORY_SERVICE_TYPES = ("marac",)
IMMIGRATION_NEEDS = frozenset({"no-recourse-to-public-funds"})
IMMIGRATION_WORDS = ("recourse to public funds", "nrpf", "immigration")

offer = sa.table("offer", sa.column("id", sa.Uuid()), sa.column("service_type", sa.String()),
                 sa.column("summary", sa.JSON()), sa.column("reasons", sa.JSON()))


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(offer.c.id, offer.c.summary, offer.c.reasons)
                        .where(offer.c.service_type.in_(STATUTORY_SERVICE_TYPES))).all()
    for offer_id, summary, reasons in rows:
        needs = list((summary or {}).get("needs") or [])
        kept_needs = [need for need in needs if need not in IMMIGRATION_NEEDS]
        kept_reasons = [r for r in reasons or [] if not any(word in r.lower() for word in IMMIGRATION_WORDS)]
        if kept_needs != needs or kept_reasons != list(reasons or []):
            conn.execute(offer.update().where(offer.c.id == offer_id)
                         .values(summary={**summary, "needs": kept_needs}, reasons=kept_reasons))


def downgrade() -> None:
    # What was removed is not put back: a statutory body must never have been shown it.
    pass
