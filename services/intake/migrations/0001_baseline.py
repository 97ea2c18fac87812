"""Baseline: intake's tables exactly as release 0.1 created them (frozen: never edit; see
shared/migration_baseline.py)."""

from __future__ import annotations

import sqlalchemy as sa

from shared.migration_baseline import Baseline

revision = "0001"
down_revision = None


def service_tables(metadata: sa.MetaData) -> None:
    sa.Table(
        "api_client",
        metadata,
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("ods_codes", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    sa.Table(
        "fhir_subscription",
        metadata,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("endpoint", sa.String(length=500), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("heartbeat_seconds", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("events_since_start", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=120), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_fhir_subscription_client_id", "client_id"),
        sa.Index("ix_fhir_subscription_status", "status"),
    )
    sa.Table(
        "idempotency_record",
        metadata,
        sa.Column("client_id", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=320), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("location", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "key"),
    )
    sa.Table(
        "referral",
        metadata,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(length=80), nullable=False),
        sa.Column("bundle_identifier", sa.String(length=300), nullable=True),
        sa.Column("service_request_identifier", sa.String(length=300), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("referrer_ods", sa.String(length=20), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("consent", sa.JSON(), nullable=False),
        sa.Column("identifying", sa.Text(), nullable=False),
        sa.Column("task_status", sa.String(length=20), nullable=False),
        sa.Column("business_status", sa.String(length=200), nullable=False),
        sa.Column("business_status_code", sa.String(length=60), nullable=True),
        sa.Column("task_outputs", sa.JSON(), nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id", "bundle_identifier", name="uq_referral_client_bundle"),
        sa.Index("ix_referral_client_id", "client_id"),
        sa.Index("ix_referral_last_updated", "last_updated"),
        sa.Index("ix_referral_service_request_identifier", "service_request_identifier"),
    )
    sa.Table(
        "subscription_notification",
        metadata,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("event_number", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(["subscription_id"], ["fhir_subscription.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_subscription_notification_next_attempt_at", "next_attempt_at"),
        sa.Index("ix_subscription_notification_status", "status"),
        sa.Index("ix_subscription_notification_subscription_id", "subscription_id"),
    )


baseline_metadata, upgrade, downgrade = Baseline(service_tables, audit=True).revision()
