"""The audit trail becomes a hash chain (issue 13): records gain a reason and their place in the chain,
and the chain's head row is created (``shared.migration_audit``). Referrals gain ``closed_at``, when
their Task became final, from which the identifying data's retention is counted; referrals already
closed take their last update as that moment.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 22:57:10.083933
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.migration_audit import downgrade_audit_chain, upgrade_audit_chain

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_audit_chain()
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_referral_closed_at'), ['closed_at'], unique=False)
    op.execute("UPDATE referral SET closed_at = last_updated "
               "WHERE task_status IN ('completed', 'rejected', 'cancelled')")


def downgrade() -> None:
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_referral_closed_at'))
        batch_op.drop_column('closed_at')
    downgrade_audit_chain()
