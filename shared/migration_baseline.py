"""Release 0.1's shared tables (consumer inbox, outbox, audit trail), frozen for the services' baseline
migrations (revision 0001 of each service).

Frozen means never edited: these definitions are what ``create_all`` made before migrations existed, so
existing databases can be recognised and adopted. A change to one of these tables is a new revision in
each service that has the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

SHARED_TABLES = ("processed_event", "outbox", "audit_record")


def add_shared_tables(metadata: sa.MetaData, *, audit: bool) -> None:
    """Add the inbox and outbox every service has, and the audit trail where the service keeps one."""
    sa.Table(
        "processed_event",
        metadata,
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )
    sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
        sa.Index("ix_outbox_published_at", "published_at"),
    )
    if audit:
        sa.Table(
            "audit_record",
            metadata,
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("actor_kind", sa.String(length=20), nullable=False),
            sa.Column("actor_id", sa.String(length=100), nullable=False),
            sa.Column("action", sa.String(length=60), nullable=False),
            sa.Column("case_id", sa.Uuid(), nullable=True),
            sa.Column("detail", sa.String(length=500), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.Index("ix_audit_record_at", "at"),
            sa.Index("ix_audit_record_case_id", "case_id"),
        )


def create_baseline(metadata: sa.MetaData) -> None:
    """A baseline revision's upgrade: create its frozen tables (never "if not exists": a clash is an error)."""
    metadata.create_all(op.get_bind(), checkfirst=False)


def drop_baseline(metadata: sa.MetaData) -> None:
    """A baseline revision's downgrade: drop its tables, and with them every row they hold."""
    metadata.drop_all(op.get_bind(), checkfirst=False)
