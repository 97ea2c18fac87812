"""Report timings (issue 14): when intake received each referral, and when each offer was accepted and the
survivor first contacted. Existing rows get what can be read back: the first consent statement stands in
for the referral time, the last change of an accepted offer with no outcome for its acceptance.

Revision ID: 0006_webops
Revises: 0005
Create Date: 2026-11-26 23:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006_webops'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('case_consent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('referred_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('offer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('first_contact_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE case_consent SET referred_at = consent_at WHERE consent_version = 1")
    op.execute("UPDATE offer SET accepted_at = last_updated WHERE status = 'accepted' AND outcome IS NULL")


def downgrade() -> None:
    with op.batch_alter_table('offer', schema=None) as batch_op:
        batch_op.drop_column('first_contact_at')
        batch_op.drop_column('accepted_at')
    with op.batch_alter_table('case_consent', schema=None) as batch_op:
        batch_op.drop_column('referred_at')
