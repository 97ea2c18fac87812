"""Baseline: router's tables exactly as release 0.1 created them (frozen: never edit; see
shared/migration_baseline.py)."""

from __future__ import annotations

import sqlalchemy as sa

from shared.migration_baseline import Baseline

revision = "0001"
down_revision = None


def service_tables(metadata: sa.MetaData) -> None:
    sa.Table(
        "offer_load",
        metadata,
        sa.Column("offer_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.String(length=80), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("offer_id"),
        sa.Index("ix_offer_load_case_id", "case_id"),
        sa.Index("ix_offer_load_open", "open"),
        sa.Index("ix_offer_load_service_id", "service_id"),
    )
    sa.Table(
        "routed_case",
        metadata,
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("risk_band", sa.String(length=20), nullable=False),
        sa.Column("area_codes", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("consent", sa.JSON(), nullable=False),
        sa.Column("lanes", sa.JSON(), nullable=False),
        sa.Column("offered", sa.JSON(), nullable=False),
        sa.Column("accepted", sa.JSON(), nullable=False),
        sa.Column("failed_offers", sa.Integer(), nullable=False),
        sa.Column("rule_version", sa.String(length=30), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
    )
    sa.Table(
        "routing_decision",
        metadata,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=300), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("offer_to", sa.JSON(), nullable=False),
        sa.Column("lanes", sa.JSON(), nullable=False),
        sa.Column("excluded", sa.JSON(), nullable=False),
        sa.Column("passed_over", sa.JSON(), nullable=False),
        sa.Column("notes", sa.JSON(), nullable=False),
        sa.Column("escalation", sa.Text(), nullable=True),
        sa.Column("no_offer_reason", sa.Text(), nullable=True),
        sa.Column("advice", sa.String(length=200), nullable=True),
        sa.Column("rule_version", sa.String(length=30), nullable=False),
        sa.Column("directory_version", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_routing_decision_case_id", "case_id"),
    )


baseline_metadata, upgrade, downgrade = Baseline(service_tables, audit=False).revision()
