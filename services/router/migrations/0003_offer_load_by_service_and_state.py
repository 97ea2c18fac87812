"""Offer load by service and state (issue 9): a case's capacity check counts the open offers of its
candidates that have a limit from this index alone, instead of every open offer the router knows of.
An index only: the previous release's code runs unchanged beside it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 17:37:17.152318
"""

from __future__ import annotations

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('offer_load', schema=None) as batch_op:
        batch_op.create_index('ix_offer_load_service_open', ['service_id', 'open'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('offer_load', schema=None) as batch_op:
        batch_op.drop_index('ix_offer_load_service_open')
