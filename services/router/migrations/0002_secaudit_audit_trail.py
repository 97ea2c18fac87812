"""The router keeps an audit trail too (issue 13): ops reading a case's routing decisions (the
characteristics a survivor shared among them) is on record, hash-chained like the other services'
(``shared.migration_audit``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:25:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.migration_audit import downgrade_audit_chain, upgrade_audit_chain
from shared.migration_baseline import audit_record

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    audit_record(sa.MetaData()).create(op.get_bind())
    upgrade_audit_chain()


def downgrade() -> None:
    downgrade_audit_chain()
    op.drop_table('audit_record')
