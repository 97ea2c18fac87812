"""The directory's own tables: organisations, their services, and the gazetteer.

List-valued fields are JSON columns: they are small, always read whole, and searched in the
in-memory index (``services.directory.search``), never by SQL.
"""

from __future__ import annotations

from datetime import datetime

from uuid import UUID, uuid4

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.audit import AuditChain, AuditRecord
from shared.credentials import KeyCredential
from shared.db import utc_field
from shared.events import utcnow


class OrganisationBase(SQLModel):
    name: str = Field(max_length=200)
    charity_number: str | None = Field(default=None, max_length=20)
    ods_code: str | None = Field(default=None, max_length=20)
    # Communities the organisation is led by and for (shared.reference.Community).
    by_and_for: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Communities not in the vocabulary (for example a named faith or language community), as words.
    by_and_for_other: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    delivery: str = Field(default="poll", max_length=20)  # DeliveryChannel
    webhook_url: str | None = Field(default=None, max_length=500)
    # Who ops and referrers talk to about the organisation (a role, not a survivor).
    contact_name: str | None = Field(default=None, max_length=200)
    contact_email: str | None = Field(default=None, max_length=200)
    contact_phone: str | None = Field(default=None, max_length=40)
    website: str | None = Field(default=None, max_length=500)


class Organisation(OrganisationBase, table=True):
    id: str = Field(primary_key=True, max_length=80)
    # Standard Webhooks secrets ("whsec_…"), newest first; more than one while rotating. Only notify
    # reads them (internal endpoint); no public view includes them.
    signing_secrets: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = utc_field(default_factory=utcnow, index=True)


class ServiceBase(SQLModel):
    name: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    service_type: str = Field(max_length=40, index=True)
    by_and_for: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # ONS GSS codes (LAD, upper-tier LA, ICB, region), postcode districts, or "national".
    coverage: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    coverage_level: str = Field(default="local", max_length=20)
    # Eligibility (shared.reference vocabularies); an empty list means "no restriction".
    genders: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    min_age: int | None = None
    max_age: int | None = None
    accepts_nrpf: bool = True
    risk_levels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    languages: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    bsl: bool = False
    accessibility: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    abuse_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    worker_genders: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Capacity and status.
    accepting: bool = True
    max_open_offers: int | None = None
    wait_band: str | None = Field(default=None, max_length=40)
    response_sla_hours: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="active", max_length=30)
    # The service's own contact for professionals (for a MARAC: its coordinator's role mailbox).
    contact_name: str | None = Field(default=None, max_length=200)
    contact_email: str | None = Field(default=None, max_length=200)
    contact_phone: str | None = Field(default=None, max_length=40)


class Service(ServiceBase, table=True):
    id: str = Field(primary_key=True, max_length=80)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=80)
    # Indexed: the search index's version check reads max(updated_at) on every search.
    updated_at: datetime = utc_field(default_factory=utcnow, index=True)


class DistrictArea(SQLModel, table=True):
    """A postcode district's share of a local authority (a district can span several)."""

    __tablename__ = "district_area"

    district: str = Field(primary_key=True, max_length=8)
    lad_code: str = Field(primary_key=True, max_length=9)
    lad_name: str = Field(max_length=100)
    utla_code: str = Field(max_length=9)
    icb_code: str = Field(max_length=9)
    share: float = 1.0


class AreaCentroid(SQLModel, table=True):
    """Mean position of a district's or a sector's live postcodes (from the import)."""

    __tablename__ = "area_centroid"

    area: str = Field(primary_key=True, max_length=10)  # "LS7" or "LS7 3"
    lat: float
    long: float
    postcodes: int


class Postcode(SQLModel, table=True):
    """One live unit postcode from the ONS Postcode Directory / NSPL import."""

    __tablename__ = "postcode"

    postcode: str = Field(primary_key=True, max_length=8)  # as ``pcds``: "LS7 3AB"
    district: str = Field(index=True, max_length=4)
    sector: str = Field(index=True, max_length=6)  # "LS7 3"
    lad_code: str = Field(max_length=9)
    utla_code: str = Field(max_length=9)
    icb_code: str = Field(max_length=9)
    lat: float | None = None
    long: float | None = None


class LocalAuthority(SQLModel, table=True):
    """A local authority district, its upper tier and its ICB (England: 42 ICBs)."""

    __tablename__ = "local_authority"

    lad_code: str = Field(primary_key=True, max_length=9)
    name: str = Field(max_length=100)
    utla_code: str | None = Field(default=None, max_length=9)
    icb_code: str | None = Field(default=None, max_length=9)


class GazetteerImport(SQLModel, table=True):
    """One ONSPD/NSPL import: which file, when, how much. Imported districts take precedence over the
    shipped default; this table says which source is in force."""

    __tablename__ = "gazetteer_import"

    id: int | None = Field(default=None, primary_key=True)
    file_name: str = Field(max_length=200)
    imported_at: datetime = utc_field(default_factory=utcnow)
    postcodes: int
    districts: int


class ProviderKey(KeyCredential, table=True):
    """One of an organisation's named API keys: it reaches that organisation's offers and nothing else."""

    __tablename__ = "provider_key"
    __table_args__ = (UniqueConstraint("organisation_id", "name", name="uq_provider_key_name"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=80)


class OpsUser(KeyCredential, table=True):
    """A named ops credential. The directory holds them for every service (``shared.ops_users``)."""

    __tablename__ = "ops_user"

    id: str = Field(primary_key=True, max_length=100)
    # "ops" (everything ops do) or "commissioner" (reports only, never a case).
    role: str = Field(default="ops", max_length=20, sa_column_kwargs={"server_default": "ops"})


TABLES = [Organisation, Service, DistrictArea, AreaCentroid, Postcode, LocalAuthority, GazetteerImport, ProviderKey,
          OpsUser, AuditRecord, AuditChain]
