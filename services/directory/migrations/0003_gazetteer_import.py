"""The national gazetteer (issue 16): the shipped ONS-derived default is held in memory; each ONSPD/NSPL
import records itself here, so the directory can say which source is in force (``GET /gazetteer``).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "gazetteer_import",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("postcodes", sa.Integer(), nullable=False),
        sa.Column("districts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("gazetteer_import")
