"""The audit trail becomes a hash chain (issue 13): records gain a reason and their place in the chain,
and the chain's head row is created (``shared.migration_audit``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 22:57:12.574903
"""

from __future__ import annotations

from shared.migration_audit import downgrade_audit_chain, upgrade_audit_chain

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_audit_chain()


def downgrade() -> None:
    downgrade_audit_chain()
