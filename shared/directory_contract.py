"""What the directory tells the router: every service, with what routing needs, in one snapshot.

The router keeps the latest snapshot in memory (refreshed on ``directory.changed``) and routes from
its last good copy while the directory is away. Vocabularies come from ``shared.reference``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Organisation and service ids: 2-80 lower-case letters, digits and hyphens. Callers that pass an id on
# to the directory (notify's ops assigning a service by hand) check it with the same rule, so nothing
# else can reach a directory URL.
DIRECTORY_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,79}$"
DirectoryId = Annotated[str, Field(pattern=DIRECTORY_ID_PATTERN, min_length=2, max_length=80,
                                   description="2-80 lower-case letters, digits and hyphens",
                                   examples=["aire-valley-outreach"])]


class ServiceRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    organisation_id: str
    organisation_name: str
    name: str
    service_type: str  # ServiceType
    # Communities the service (or its organisation) is by and for (Community values).
    by_and_for: tuple[str, ...] = ()
    # ONS GSS codes (LAD, upper-tier LA, ICB, region), postcode districts, or "national".
    coverage: tuple[str, ...] = ()
    coverage_level: str = "local"  # CoverageLevel
    # Eligibility: an empty tuple means "no restriction".
    genders: tuple[str, ...] = ()
    min_age: int | None = None
    max_age: int | None = None
    accepts_nrpf: bool = True
    risk_levels: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    bsl: bool = False
    accessibility: tuple[str, ...] = ()
    abuse_types: tuple[str, ...] = ()
    worker_genders: tuple[str, ...] = ()
    # Capacity and status.
    status: str = "active"  # ServiceStatus
    accepting: bool = True
    max_open_offers: int | None = None
    wait_band: str | None = None
    response_sla_hours: dict[str, float] = {}


class AreaResolution(BaseModel):
    """A postcode district's areas: every LAD it falls in (with its share), their upper tiers and ICBs."""

    model_config = ConfigDict(frozen=True)

    district: str
    lad_codes: tuple[str, ...]
    utla_codes: tuple[str, ...] = ()
    icb_codes: tuple[str, ...] = ()
    names: dict[str, str] = {}


class DirectorySnapshot(BaseModel):
    version: str
    generated_at: datetime
    services: tuple[ServiceRecord, ...]
    areas: tuple[AreaResolution, ...] = ()


class ProviderDelivery(BaseModel):
    """How notify reaches a provider (``GET /internal/organisations/{id}/delivery`` on the directory)."""

    organisation_id: str
    channel: str  # "poll" or "webhook"
    webhook_url: str | None = None
    # Standard Webhooks secrets ("whsec_…"); more than one while a secret is being rotated.
    signing_secrets: tuple[str, ...] = ()
