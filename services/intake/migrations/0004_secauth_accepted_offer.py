"""Accepted offers as notify announces them (issue 13): intake releases identifying data only to an
organisation holding an accepted offer for the case, checked by intake itself at release.

Revision ID: 0004_secauth
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_secauth"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "accepted_offer",
        sa.Column("offer_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.String(length=80), nullable=False),
        sa.Column("service_id", sa.String(length=80), nullable=False),
        sa.Column("service_type", sa.String(length=40), nullable=True),
        sa.Column("by_and_for", sa.Boolean(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("offer_id"),
    )
    op.create_index(op.f("ix_accepted_offer_case_id"), "accepted_offer", ["case_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_accepted_offer_case_id"), table_name="accepted_offer")
    op.drop_table("accepted_offer")
