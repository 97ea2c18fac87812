"""The audit chain's schema change (issue 13), frozen here because intake, notify and the directory
each apply it in a revision of their own: records gain a reason and their place in the hash chain
(``seq``, ``prev_hash``, ``hash``, ``key_id``), and the chain's head row is created at seq 0. Records
written before it are unsealed; the sealer chains them, oldest first, once the service runs."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op


def upgrade_audit_chain() -> None:
    chain = op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(chain, [{"id": 1, "seq": 0, "hash": "0" * 64, "updated_at": datetime.now(UTC)}])
    with op.batch_alter_table("audit_record", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=200), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("key_id", sa.String(length=40), nullable=True))
        batch_op.create_index(batch_op.f("ix_audit_record_actor_id"), ["actor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_record_seq"), ["seq"], unique=True)


def downgrade_audit_chain() -> None:
    with op.batch_alter_table("audit_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_record_seq"))
        batch_op.drop_index(batch_op.f("ix_audit_record_actor_id"))
        batch_op.drop_column("key_id")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
        batch_op.drop_column("reason")
    op.drop_table("audit_chain")
