"""Release 0.1's shared tables (consumer inbox, outbox, audit trail), frozen for the services' baseline
migrations (revision 0001 of each service).

Frozen means never edited: these definitions are what ``create_all`` made before migrations existed, so
existing databases can be recognised and adopted. A change to one of these tables is a new revision in
each service that has the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
        audit_record(metadata)


def audit_record(metadata: sa.MetaData) -> sa.Table:
    """The audit trail's table as release 0.1 defined it (also what a service that gains one creates)."""
    return sa.Table(
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


@dataclass(frozen=True)
class Baseline:
    """A service's revision 0001: its own tables plus the shared ones, created on upgrade (never "if
    not exists": a clash is an error) and dropped, with every row they hold, on downgrade."""

    service_tables: Callable[[sa.MetaData], None]
    audit: bool

    def metadata(self) -> sa.MetaData:
        metadata = sa.MetaData()
        self.service_tables(metadata)
        add_shared_tables(metadata, audit=self.audit)
        return metadata

    def upgrade(self) -> None:
        self.metadata().create_all(op.get_bind(), checkfirst=False)

    def downgrade(self) -> None:
        self.metadata().drop_all(op.get_bind(), checkfirst=False)

    def revision(self) -> tuple[Callable[[], sa.MetaData], Callable[[], None], Callable[[], None]]:
        """What the revision module exports: ``baseline_metadata`` (read to adopt an unversioned
        database), ``upgrade`` and ``downgrade``."""
        return self.metadata, self.upgrade, self.downgrade
