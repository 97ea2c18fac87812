"""Baseline: directory's tables exactly as release 0.1 created them (frozen: never edit; see
shared/migration_baseline.py)."""

from __future__ import annotations

import sqlalchemy as sa

from shared.migration_baseline import Baseline

revision = "0001"
down_revision = None


def service_tables(metadata: sa.MetaData) -> None:
    sa.Table(
        "area_centroid",
        metadata,
        sa.Column("area", sa.String(length=10), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("long", sa.Float(), nullable=False),
        sa.Column("postcodes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("area"),
    )
    sa.Table(
        "district_area",
        metadata,
        sa.Column("district", sa.String(length=8), nullable=False),
        sa.Column("lad_code", sa.String(length=9), nullable=False),
        sa.Column("lad_name", sa.String(length=100), nullable=False),
        sa.Column("utla_code", sa.String(length=9), nullable=False),
        sa.Column("icb_code", sa.String(length=9), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("district", "lad_code"),
    )
    sa.Table(
        "local_authority",
        metadata,
        sa.Column("lad_code", sa.String(length=9), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("utla_code", sa.String(length=9), nullable=True),
        sa.Column("icb_code", sa.String(length=9), nullable=True),
        sa.PrimaryKeyConstraint("lad_code"),
    )
    sa.Table(
        "organisation",
        metadata,
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("charity_number", sa.String(length=20), nullable=True),
        sa.Column("ods_code", sa.String(length=20), nullable=True),
        sa.Column("by_and_for", sa.JSON(), nullable=False),
        sa.Column("by_and_for_other", sa.JSON(), nullable=False),
        sa.Column("delivery", sa.String(length=20), nullable=False),
        sa.Column("webhook_url", sa.String(length=500), nullable=True),
        sa.Column("contact_name", sa.String(length=200), nullable=True),
        sa.Column("contact_email", sa.String(length=200), nullable=True),
        sa.Column("contact_phone", sa.String(length=40), nullable=True),
        sa.Column("website", sa.String(length=500), nullable=True),
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("api_key_hash", sa.String(length=64), nullable=True),
        sa.Column("signing_secrets", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_organisation_api_key_hash", "api_key_hash"),
        sa.Index("ix_organisation_updated_at", "updated_at"),
    )
    sa.Table(
        "postcode",
        metadata,
        sa.Column("postcode", sa.String(length=8), nullable=False),
        sa.Column("district", sa.String(length=4), nullable=False),
        sa.Column("sector", sa.String(length=6), nullable=False),
        sa.Column("lad_code", sa.String(length=9), nullable=False),
        sa.Column("utla_code", sa.String(length=9), nullable=False),
        sa.Column("icb_code", sa.String(length=9), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("long", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("postcode"),
        sa.Index("ix_postcode_district", "district"),
        sa.Index("ix_postcode_sector", "sector"),
    )
    sa.Table(
        "service",
        metadata,
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=True),
        sa.Column("service_type", sa.String(length=40), nullable=False),
        sa.Column("by_and_for", sa.JSON(), nullable=False),
        sa.Column("coverage", sa.JSON(), nullable=False),
        sa.Column("coverage_level", sa.String(length=20), nullable=False),
        sa.Column("genders", sa.JSON(), nullable=False),
        sa.Column("min_age", sa.Integer(), nullable=True),
        sa.Column("max_age", sa.Integer(), nullable=True),
        sa.Column("accepts_nrpf", sa.Boolean(), nullable=False),
        sa.Column("risk_levels", sa.JSON(), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("bsl", sa.Boolean(), nullable=False),
        sa.Column("accessibility", sa.JSON(), nullable=False),
        sa.Column("abuse_types", sa.JSON(), nullable=False),
        sa.Column("worker_genders", sa.JSON(), nullable=False),
        sa.Column("accepting", sa.Boolean(), nullable=False),
        sa.Column("max_open_offers", sa.Integer(), nullable=True),
        sa.Column("wait_band", sa.String(length=40), nullable=True),
        sa.Column("response_sla_hours", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("contact_name", sa.String(length=200), nullable=True),
        sa.Column("contact_email", sa.String(length=200), nullable=True),
        sa.Column("contact_phone", sa.String(length=40), nullable=True),
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("organisation_id", sa.String(length=80), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_service_organisation_id", "organisation_id"),
        sa.Index("ix_service_service_type", "service_type"),
        sa.Index("ix_service_updated_at", "updated_at"),
    )


baseline_metadata, upgrade, downgrade = Baseline(service_tables, audit=False).revision()
