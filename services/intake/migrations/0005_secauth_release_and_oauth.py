"""Issue 13 (sec-auth): accepted offers as notify announces them (intake releases identifying data only
to an organisation holding an accepted offer for the case, checked by intake itself at release), and
OAuth2 client credentials with private_key_jwt (a client's JWKS, assertion jtis until they expire,
access tokens as digests).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "accepted_offer",
        sa.Column("offer_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.String(length=80), nullable=False),
        sa.Column("service_id", sa.String(length=80), nullable=False),
        sa.Column("service_type", sa.String(length=40), nullable=True),
        sa.Column("by_and_for", sa.Boolean(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("offer_id"),
    )
    op.create_index(op.f("ix_accepted_offer_case_id"), "accepted_offer", ["case_id"], unique=False)
    with op.batch_alter_table("api_client") as batch:
        batch.add_column(sa.Column("jwks", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("jwks_url", sa.String(length=500), nullable=True))
    op.create_table(
        "client_assertion_jti",
        sa.Column("client_id", sa.String(length=80), nullable=False),
        sa.Column("jti", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti"),
    )
    op.create_index(op.f("ix_client_assertion_jti_expires_at"), "client_assertion_jti", ["expires_at"], unique=False)
    op.create_table(
        "access_token",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index(op.f("ix_access_token_client_id"), "access_token", ["client_id"], unique=False)
    op.create_index(op.f("ix_access_token_expires_at"), "access_token", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_access_token_expires_at"), table_name="access_token")
    op.drop_index(op.f("ix_access_token_client_id"), table_name="access_token")
    op.drop_table("access_token")
    op.drop_index(op.f("ix_client_assertion_jti_expires_at"), table_name="client_assertion_jti")
    op.drop_table("client_assertion_jti")
    with op.batch_alter_table("api_client") as batch:
        batch.drop_column("jwks_url")
        batch.drop_column("jwks")
    op.drop_index(op.f("ix_accepted_offer_case_id"), table_name="accepted_offer")
    op.drop_table("accepted_offer")
