"""Ops-user roles (issue 13): an ops-user credential is either "ops" or "commissioner" (reports only,
never a case). Existing users stay ops.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("ops_user") as batch:
        batch.add_column(sa.Column("role", sa.String(length=20), nullable=False, server_default="ops"))


def downgrade() -> None:
    with op.batch_alter_table("ops_user") as batch:
        batch.drop_column("role")
