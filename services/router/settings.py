"""Router configuration (``ROUTER_`` prefix), including the thresholds local protocols may change per area."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from pydantic import BaseModel, Field

from shared.settings import ServiceSettings, prefixed


class AreaProtocol(BaseModel):
    """Thresholds a local protocol sets: a whole protocol replaces the default for its area."""

    # Declined or expired offers on one case before ops is told (re-offers carry on meanwhile).
    escalate_after_failed_offers: int = Field(default=3, ge=1)
    # Response windows per risk band (hours) carried on each offer; a service's own shorter SLA wins.
    sla_hours: dict[str, float] = Field(default_factory=lambda: {"high": 4.0, "medium": 48.0, "standard": 120.0})


class RouterSettings(ServiceSettings):
    service_name: ClassVar[str] = "router"
    model_config = prefixed("ROUTER_")

    port: int = 8002
    directory_url: str = "http://127.0.0.1:8003"
    # Safety net beside directory.changed: how often the in-memory directory copy is re-read.
    directory_refresh_seconds: float = 300.0
    # How long to wait for the directory when routing a case and no copy is held yet.
    directory_timeout_seconds: float = 5.0
    # Deliveries of a referral before it is dead-lettered to ops. A router with no directory copy and no
    # directory retries with backoff (1, 5, 15, 60, then 300 s): 20 deliveries wait about 80 minutes.
    referral_max_deliver: int = Field(default=20, ge=1)
    protocol: AreaProtocol = AreaProtocol()
    # Local protocols by area code (LAD, upper tier or ICB), as JSON:
    # ROUTER_AREA_PROTOCOLS='{"E08000035": {"escalate_after_failed_offers": 2, "sla_hours": {"high": 2}}}'
    area_protocols: dict[str, AreaProtocol] = Field(default_factory=dict)

    def protocol_for(self, codes: Iterable[str]) -> AreaProtocol:
        """The protocol of the first of the case's area codes (most local first) that has one."""
        return next((self.area_protocols[c] for c in codes if c in self.area_protocols), self.protocol)
