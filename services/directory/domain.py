"""The directory's rules: what a valid organisation and service are, and what an area query means.

Pure functions and pydantic models, unit-tested without I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, UrlConstraints, model_validator

from shared.directory_contract import DIRECTORY_ID_PATTERN
from shared.events import RiskBand
from shared.reference import (
    DISTRICT_RE,
    NATIONAL,
    AbuseType,
    Community,
    CoverageLevel,
    Gender,
    ServiceStatus,
    ServiceType,
    normalise_postcode,
)

# ONS GSS code: a letter for the country, two digits for the entity, six digits (E08000035).
GSS_RE = re.compile(r"^[EWSN][0-9]{8}$")
# Entity prefixes that a service may cover (LAD, upper tier, ICB, region, country).
COVERAGE_ENTITIES = {
    "E06": "unitary authority",
    "E07": "non-metropolitan district",
    "E08": "metropolitan district",
    "E09": "London borough",
    "E10": "county",
    "E54": "integrated care board",
    "E12": "region",
    "E92": "country",
    "W06": "Welsh unitary authority",
}
SECTOR_RE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9])$")
FULL_RE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9])([A-Z]{2})$")
SLUG_RE = re.compile(DIRECTORY_ID_PATTERN)
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
MAX_OPEN_OFFERS = 100_000
WEBHOOK_SECRET_RE = re.compile(r"^whsec_[A-Za-z0-9+/=]{24,}$")


class DeliveryChannel(StrEnum):
    poll = "poll"
    webhook = "webhook"


class WaitBand(StrEnum):
    same_day = "same-day"
    within_week = "within-a-week"
    one_to_four_weeks = "1-4-weeks"
    over_four_weeks = "over-4-weeks"


def _vocabulary(enum: type[StrEnum]) -> Any:
    allowed = {member.value for member in enum}

    def check(values: list[str]) -> list[str]:
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(f"unknown value(s) {unknown}; allowed: {sorted(allowed)}")
        return sorted(set(values))

    return AfterValidator(check)


def _coverage(values: list[str]) -> list[str]:
    """Coverage codes: ONS codes of the kinds a service can cover, postcode districts, or "national"."""
    cleaned: list[str] = []
    for raw in values:
        value = raw.strip()
        if value == NATIONAL:
            cleaned.append(value)
            continue
        upper = normalise_postcode(value)
        if GSS_RE.match(upper):
            if upper[:3] not in COVERAGE_ENTITIES:
                raise ValueError(f"{upper} is an ONS code of a kind a service cannot cover")
            cleaned.append(upper)
        elif DISTRICT_RE.match(upper):
            cleaned.append(upper)
        else:
            raise ValueError(f"'{raw}' is neither an ONS area code, a postcode district nor 'national'")
    if not cleaned:
        raise ValueError("a service must cover at least one area (or 'national')")
    return sorted(set(cleaned))


def _languages(values: list[str]) -> list[str]:
    for value in values:
        if not LANGUAGE_RE.match(value):
            raise ValueError(f"'{value}' is not a BCP 47 language tag such as 'ur' or 'pa'")
    return sorted(set(values))


def _slug(value: str) -> str:
    if not SLUG_RE.match(value):
        raise ValueError("ids are 2-80 lower-case letters, digits and hyphens")
    return value


Slug = Annotated[str, Field(min_length=2, max_length=80), AfterValidator(_slug)]
# As long as the column that stores it (store.OrganisationBase): the limits of the input are the storage's.
Url = Annotated[HttpUrl, UrlConstraints(max_length=500)]
Communities = Annotated[list[str], _vocabulary(Community)]


class OrganisationIn(BaseModel):
    """An organisation as ops create or replace it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=2, max_length=200)
    charity_number: str | None = Field(default=None, pattern=r"^(SC)?[0-9]{6,8}(-[0-9]{1,4})?$", max_length=20)
    ods_code: str | None = Field(default=None, pattern=r"^[A-Z0-9]{3,10}$", max_length=20)
    by_and_for: Communities = []
    by_and_for_other: list[Annotated[str, Field(min_length=2, max_length=60)]] = []
    delivery: DeliveryChannel = DeliveryChannel.poll
    webhook_url: Url | None = None
    signing_secrets: list[Annotated[str, Field(pattern=WEBHOOK_SECRET_RE.pattern)]] = Field(default=[], max_length=3)
    contact_name: str | None = Field(default=None, max_length=200)
    contact_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=200)
    contact_phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ]{6,20}$", max_length=40)
    website: Url | None = None

    @model_validator(mode="after")
    def _webhook_needs_url_and_secret(self) -> OrganisationIn:
        if self.delivery is DeliveryChannel.webhook:
            if self.webhook_url is None:
                raise ValueError("webhook delivery needs a webhook_url")
            if self.webhook_url.scheme != "https" and self.webhook_url.host not in ("localhost", "127.0.0.1"):
                raise ValueError("a webhook_url must use https (cases are sensitive)")
            if not self.signing_secrets:
                raise ValueError("webhook delivery needs at least one whsec_ signing secret")
        return self

    def columns(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        return data


class OrganisationCreate(OrganisationIn):
    id: Slug


class ServiceIn(BaseModel):
    """A service as ops create or replace it."""

    model_config = ConfigDict(extra="forbid")

    organisation_id: Slug
    name: str = Field(min_length=2, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    service_type: ServiceType
    by_and_for: Communities = []
    coverage: Annotated[list[str], AfterValidator(_coverage)]
    coverage_level: CoverageLevel = CoverageLevel.local
    genders: Annotated[list[str], _vocabulary(Gender)] = []
    min_age: int | None = Field(default=None, ge=0, le=120)
    max_age: int | None = Field(default=None, ge=0, le=120)
    accepts_nrpf: bool = True
    risk_levels: Annotated[list[str], _vocabulary(RiskBand)] = []
    languages: Annotated[list[str], AfterValidator(_languages)] = []
    bsl: bool = False
    accessibility: list[Annotated[str, Field(min_length=2, max_length=60)]] = []
    abuse_types: Annotated[list[str], _vocabulary(AbuseType)] = []
    worker_genders: Annotated[list[str], _vocabulary(Gender)] = []
    accepting: bool = True
    max_open_offers: int | None = Field(default=None, ge=0, le=MAX_OPEN_OFFERS)
    wait_band: WaitBand | None = None
    response_sla_hours: dict[RiskBand, Annotated[float, Field(gt=0, le=24 * 30)]] = {}
    status: ServiceStatus = ServiceStatus.active
    contact_name: str | None = Field(default=None, max_length=200)
    contact_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=200)
    contact_phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ]{6,20}$", max_length=40)

    @model_validator(mode="after")
    def _consistent(self) -> ServiceIn:
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ValueError("min_age is above max_age")
        national = NATIONAL in self.coverage
        if national and len(self.coverage) > 1:
            raise ValueError("a national service covers 'national' only")
        if national != (self.coverage_level is CoverageLevel.national):
            raise ValueError("coverage 'national' and coverage_level 'national' go together")
        if self.service_type is ServiceType.national_helpline and not national:
            raise ValueError("a national helpline covers 'national'")
        if self.service_type is ServiceType.marac and national:
            raise ValueError("a MARAC serves one local area, never 'national'")
        if self.service_type is ServiceType.perpetrator_programme and self.accepting:
            # Perpetrator programmes are listed for professionals; survivors are never routed to them.
            raise ValueError("a perpetrator programme is never a referral target: set accepting to false")
        return self

    def columns(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ServiceCreate(ServiceIn):
    id: Slug


# --- Areas ---------------------------------------------------------------------------------------


class AreaKind(StrEnum):
    postcode = "postcode"
    sector = "sector"
    district = "district"
    code = "code"


class InvalidArea(ValueError):
    pass


@dataclass(frozen=True)
class AreaQuery:
    """A parsed area query: what kind of thing it is and its normal form."""

    kind: AreaKind
    value: str  # "LS7 3AB", "LS7 3", "LS7" or "E08000035"
    district: str | None


def parse_area(area: str) -> AreaQuery:
    """Classify a query as a full postcode, a sector, a district or an ONS code; raise
    ``InvalidArea`` (with why) for anything else.

    A sector needs its space ("LS7 3"): without it "LS73" is district LS73, as Royal Mail reads it.
    """
    spaced = " ".join(area.upper().split())
    value = spaced.replace(" ", "")
    if not value:
        raise InvalidArea("An area is required: a postcode, a postcode sector or district, or an ONS code.")
    if GSS_RE.match(value):
        return AreaQuery(AreaKind.code, value, None)
    if full := FULL_RE.match(value):
        district = full.group(1)
        return AreaQuery(AreaKind.postcode, f"{district} {full.group(2)}{full.group(3)}", district)
    if DISTRICT_RE.match(value) and " " not in spaced:
        return AreaQuery(AreaKind.district, value, value)
    if sector := SECTOR_RE.match(spaced):
        return AreaQuery(AreaKind.sector, f"{sector.group(1)} {sector.group(2)}", sector.group(1))
    raise InvalidArea(
        f"'{area}' is not a valid postcode, postcode sector (e.g. 'LS7 3'), district (e.g. 'LS7') "
        "or 9-character ONS code (e.g. 'E08000035')."
    )


@dataclass(frozen=True)
class AreaPart:
    lad_code: str
    lad_name: str
    utla_code: str
    icb_code: str
    share: float


@dataclass(frozen=True)
class ResolvedArea:
    query: str
    district: str | None
    parts: tuple[AreaPart, ...]
    kind: AreaKind = AreaKind.district
    centroid: tuple[float, float] | None = None

    @property
    def codes(self) -> frozenset[str]:
        codes = {self.query}
        if self.district:
            codes.add(self.district)
        for part in self.parts:
            codes.update((part.lad_code, part.utla_code, part.icb_code))
        codes.discard("")
        return frozenset(codes)

    @property
    def names(self) -> dict[str, str]:
        return {p.lad_code: p.lad_name for p in self.parts}


def coverage_reason(coverage: Sequence[str], area: ResolvedArea) -> str | None:
    """Why a service's coverage includes the area, or ``None`` when it does not."""
    wanted = area.codes
    names = area.names
    for code in coverage:
        if code in wanted:
            return f"serves {names[code]} ({code})" if code in names else f"covers {code}"
    if NATIONAL in coverage:
        return "national service"
    return None
