"""Baseline: notify's tables exactly as release 0.1 created them (frozen: never edit; see
shared/migration_baseline.py)."""

from __future__ import annotations

import sqlalchemy as sa

from shared.migration_baseline import Baseline

revision = "0001"
down_revision = None


def service_tables(metadata: sa.MetaData) -> None:
    sa.Table(
        "case_consent",
        metadata,
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("consent", sa.JSON(), nullable=False),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("closed_reason", sa.String(length=60), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
    )
    sa.Table(
        "escalation",
        metadata,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_service_id", sa.String(length=80), nullable=True),
        sa.Column("assigned_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_escalation_case_id", "case_id"),
        sa.Index("ix_escalation_status", "status"),
        sa.Index("ix_escalation_updated_at", "updated_at"),
    )
    sa.Table(
        "offer",
        metadata,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=True),
        sa.Column("service_id", sa.String(length=80), nullable=False),
        sa.Column("service_name", sa.String(length=200), nullable=False),
        sa.Column("service_type", sa.String(length=40), nullable=False),
        sa.Column("organisation_id", sa.String(length=80), nullable=False),
        sa.Column("by_and_for", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("respond_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_reason", sa.String(length=60), nullable=True),
        sa.Column("status_text", sa.String(length=500), nullable=True),
        sa.Column("handoff_released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_contact_reason", sa.String(length=60), nullable=True),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("assigned_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_offer_case_id", "case_id"),
        sa.Index("ix_offer_last_updated", "last_updated"),
        sa.Index("ix_offer_organisation_id", "organisation_id"),
        sa.Index("ix_offer_respond_by", "respond_by"),
        sa.Index("ix_offer_status", "status"),
    )
    sa.Table(
        "routing_record",
        metadata,
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("offer_to", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("decision_id"),
        sa.Index("ix_routing_record_case_id", "case_id"),
    )
    sa.Table(
        "webhook_delivery",
        metadata,
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("source_key", sa.String(length=120), nullable=False),
        sa.Column("organisation_id", sa.String(length=80), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.Column("offer_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=120), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_key", name="uq_webhook_delivery_source"),
        sa.Index("ix_webhook_delivery_case_id", "case_id"),
        sa.Index("ix_webhook_delivery_next_attempt_at", "next_attempt_at"),
        sa.Index("ix_webhook_delivery_organisation_id", "organisation_id"),
        sa.Index("ix_webhook_delivery_status", "status"),
    )
    sa.Table(
        "webhook_endpoint_state",
        metadata,
        sa.Column("organisation_id", sa.String(length=80), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organisation_id"),
    )
    sa.Table(
        "escalation_note",
        metadata,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("escalation_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("text", sa.String(length=2000), nullable=False),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalation.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_escalation_note_escalation_id", "escalation_id"),
    )


baseline_metadata, upgrade, downgrade = Baseline(service_tables, audit=True).revision()
