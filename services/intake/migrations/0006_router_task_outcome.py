"""The referrer's Task says why coded (statusReason) and carries the routing decision's summary (issue 12).

Both columns are nullable: existing referrals have neither until their next case.status.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status_reason_code', sa.String(length=60), nullable=True))
        batch_op.add_column(sa.Column('routing_summary', sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.drop_column('routing_summary')
        batch_op.drop_column('status_reason_code')
