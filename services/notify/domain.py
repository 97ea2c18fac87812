"""Notify's rules: offer deadlines."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.events import RiskBand


def respond_by(created_at: datetime, risk_band: RiskBand, hours: dict[RiskBand, float]) -> datetime:
    """The offer's response deadline: shorter for higher risk."""
    return created_at + timedelta(hours=hours[risk_band])
