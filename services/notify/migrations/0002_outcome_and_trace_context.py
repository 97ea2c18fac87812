"""An offer's latest outcome as a column (issue 10's state machines; ``outcomes`` keeps the history),
and the trace context a webhook delivery continues (issue 11).

Existing offers take their latest outcome from ``outcomes``; existing deliveries get an empty context
(their retries start a new trace).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

offer = sa.table("offer", sa.column("id", sa.Uuid()), sa.column("outcomes", sa.JSON()), sa.column("outcome", sa.String()))


def upgrade() -> None:
    with op.batch_alter_table("offer") as batch:
        batch.add_column(sa.Column("outcome", sa.String(length=40), nullable=True))
    bind = op.get_bind()
    for offer_id, outcomes in bind.execute(sa.select(offer.c.id, offer.c.outcomes)):
        if outcomes:
            bind.execute(offer.update().where(offer.c.id == offer_id).values(outcome=outcomes[-1]))
    with op.batch_alter_table("webhook_delivery") as batch:
        batch.add_column(sa.Column("trace_context", sa.Text(), nullable=False, server_default="{}"))
    with op.batch_alter_table("webhook_delivery") as batch:
        batch.alter_column("trace_context", existing_type=sa.Text(), existing_nullable=False, server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("webhook_delivery") as batch:
        batch.drop_column("trace_context")
    with op.batch_alter_table("offer") as batch:
        batch.drop_column("outcome")
