"""EHR clients get the credential lifecycle (issue 12): issued, expires, rotated, revoked, issued by;
their ODS codes move from a JSON list to rows of ``api_client_ods``.

Existing clients keep their keys: issued now, valid for the default year, marked ``created_by =
"release-0.1"``; a client that was inactive is revoked now.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

MIGRATED_BY = "release-0.1"
VALID_FOR = timedelta(days=365)  # shared.credentials.DEFAULT_VALID_DAYS when this was written

client = sa.table(
    "api_client", sa.column("id", sa.String()), sa.column("ods_codes", sa.JSON()), sa.column("active", sa.Boolean()),
    sa.column("created_at", sa.DateTime(timezone=True)), sa.column("expires_at", sa.DateTime(timezone=True)),
    sa.column("revoked_at", sa.DateTime(timezone=True)), sa.column("created_by", sa.String()),
)
client_ods = sa.table("api_client_ods", sa.column("client_id", sa.String()), sa.column("ods_code", sa.String()))


def upgrade() -> None:
    op.create_table(
        "api_client_ods",
        sa.Column("client_id", sa.String(length=80), nullable=False),
        sa.Column("ods_code", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["api_client.id"]),
        sa.PrimaryKeyConstraint("client_id", "ods_code"),
    )
    op.create_index("ix_api_client_ods_ods_code", "api_client_ods", ["ods_code"], unique=False)
    with op.batch_alter_table("api_client") as batch:
        batch.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(length=100), nullable=True))

    bind = op.get_bind()
    now = _utc(bind)
    for client_id, ods_codes, active in bind.execute(sa.select(client.c.id, client.c.ods_codes, client.c.active)):
        for code in sorted(set(ods_codes or [])):
            bind.execute(client_ods.insert().values(client_id=client_id, ods_code=code))
        bind.execute(client.update().where(client.c.id == client_id).values(
            created_at=now, expires_at=now + VALID_FOR, revoked_at=None if active else now, created_by=MIGRATED_BY,
        ))

    with op.batch_alter_table("api_client") as batch:
        batch.alter_column("created_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.alter_column("expires_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.alter_column("created_by", existing_type=sa.String(length=100), nullable=False)
        batch.drop_column("ods_codes")
        batch.drop_column("active")


def downgrade() -> None:
    with op.batch_alter_table("api_client") as batch:
        batch.add_column(sa.Column("ods_codes", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("active", sa.Boolean(), nullable=True))
    bind = op.get_bind()
    codes: dict[str, list[str]] = {}
    for client_id, code in bind.execute(sa.select(client_ods.c.client_id, client_ods.c.ods_code)):
        codes.setdefault(client_id, []).append(code)
    now = datetime.now(UTC)
    for client_id, expires_at, revoked_at in bind.execute(
        sa.select(client.c.id, client.c.expires_at, client.c.revoked_at)
    ):
        usable = revoked_at is None and _aware(expires_at) > now
        bind.execute(client.update().where(client.c.id == client_id).values(
            ods_codes=sorted(codes.get(client_id, [])), active=usable,
        ))
    with op.batch_alter_table("api_client") as batch:
        batch.alter_column("ods_codes", existing_type=sa.JSON(), nullable=False)
        batch.alter_column("active", existing_type=sa.Boolean(), nullable=False)
        for column in ("created_by", "revoked_at", "rotated_at", "expires_at", "created_at"):
            batch.drop_column(column)
    op.drop_index("ix_api_client_ods_ods_code", table_name="api_client_ods")
    op.drop_table("api_client_ods")


def _utc(bind: sa.engine.Connection) -> datetime:
    now = datetime.now(UTC)
    return now.replace(tzinfo=None) if bind.dialect.name == "sqlite" else now  # as shared.db.UTCDateTime stores it


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
