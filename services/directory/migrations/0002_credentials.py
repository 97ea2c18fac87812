"""Credentials an area runs itself (issue 12): provider keys (several per organisation, with the
credential lifecycle) replace the organisation's single ``api_key_hash``; named ops users; the
directory keeps an audit trail of what is done with them.

An organisation's existing key becomes its provider key named "default": issued now, valid for the
default year, ``created_by = "release-0.1"``, so providers keep working through the upgrade.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from shared.migration_baseline import audit_record

revision = "0002"
down_revision = "0001"

MIGRATED_BY = "release-0.1"
KEY_NAME = "default"
VALID_FOR = timedelta(days=365)  # shared.credentials.DEFAULT_VALID_DAYS when this was written

organisation = sa.table("organisation", sa.column("id", sa.String()), sa.column("api_key_hash", sa.String()))
provider_key = sa.table(
    "provider_key", sa.column("id", sa.Uuid()), sa.column("organisation_id", sa.String()),
    sa.column("name", sa.String()), sa.column("key_hash", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)), sa.column("expires_at", sa.DateTime(timezone=True)),
    sa.column("revoked_at", sa.DateTime(timezone=True)), sa.column("created_by", sa.String()),
)


def _credential_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
    ]


def upgrade() -> None:
    audit_record(sa.MetaData()).create(op.get_bind())  # the audit trail intake and notify already have
    op.create_table(
        "ops_user",
        *_credential_columns(),
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_table(
        "provider_key",
        *_credential_columns(),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
        sa.UniqueConstraint("organisation_id", "name", name="uq_provider_key_name"),
    )
    op.create_index("ix_provider_key_organisation_id", "provider_key", ["organisation_id"], unique=False)

    bind = op.get_bind()
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # as shared.db.UTCDateTime stores it
    keys = bind.execute(sa.select(organisation.c.id, organisation.c.api_key_hash)
                        .where(organisation.c.api_key_hash.is_not(None))).all()
    for organisation_id, key_hash in keys:
        bind.execute(provider_key.insert().values(
            id=uuid.uuid4(), organisation_id=organisation_id, name=KEY_NAME, key_hash=key_hash,
            created_at=now, expires_at=now + VALID_FOR, revoked_at=None, created_by=MIGRATED_BY,
        ))

    with op.batch_alter_table("organisation") as batch:
        batch.drop_index("ix_organisation_api_key_hash")
        batch.drop_column("api_key_hash")


def downgrade() -> None:
    with op.batch_alter_table("organisation") as batch:
        batch.add_column(sa.Column("api_key_hash", sa.String(length=64), nullable=True))
        batch.create_index("ix_organisation_api_key_hash", ["api_key_hash"], unique=False)
    bind = op.get_bind()
    # The previous release had one key per organisation: it gets back the newest one not revoked.
    newest = bind.execute(
        sa.select(provider_key.c.organisation_id, provider_key.c.key_hash)
        .where(provider_key.c.revoked_at.is_(None)).order_by(provider_key.c.created_at)
    ).all()
    for organisation_id, key_hash in dict(newest).items():
        bind.execute(organisation.update().where(organisation.c.id == organisation_id).values(api_key_hash=key_hash))
    op.drop_index("ix_provider_key_organisation_id", table_name="provider_key")
    op.drop_table("provider_key")
    op.drop_table("ops_user")
    audit_record(sa.MetaData()).drop(op.get_bind())
