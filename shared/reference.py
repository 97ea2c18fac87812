"""Reference vocabularies shared by the directory, the router and notify."""

from __future__ import annotations

import re
from enum import StrEnum


class ServiceType(StrEnum):
    idva = "idva"
    health_idva = "health-idva"
    marac = "marac"
    community_outreach = "community-outreach"
    refuge = "refuge"
    isva = "isva"
    sv_counselling = "sexual-violence-counselling"
    chidva = "chidva"
    perpetrator_programme = "perpetrator-programme"
    national_helpline = "national-helpline"


class Community(StrEnum):
    """Communities a by-and-for organisation is led by and for."""

    black_minoritised = "black-minoritised"
    deaf = "deaf"
    disabled = "disabled"
    lgbt = "lgbt+"
    gypsy_roma_traveller = "gypsy-roma-traveller"
    older_people = "older-people"
    men = "men"


NATIONAL = "national"

# Postcode outward code (district), e.g. "LS7", "M1", "EC1A", "W1D".
DISTRICT_RE = re.compile(r"^(?:[A-Z]{1,2}[0-9][A-Z0-9]?)$")
FULL_POSTCODE_RE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9][A-Z]{2})$")


def normalise_postcode(value: str) -> str:
    return re.sub(r"\s+", "", value).upper()


def postcode_district(postcode: str) -> str | None:
    """The outward code of a full UK postcode ("LS7 3AB" → "LS7"); ``None`` when it is not one."""
    match = FULL_POSTCODE_RE.match(normalise_postcode(postcode))
    return match.group(1) if match else None



class AbuseType(StrEnum):
    domestic_abuse = "domestic-abuse"
    sexual_violence = "sexual-violence"
    forced_marriage = "forced-marriage"
    honour_based_abuse = "honour-based-abuse"
    fgm = "fgm"
    stalking = "stalking"
    elder_abuse = "elder-abuse"


class Need(StrEnum):
    """Needs that routing may use (shared by the survivor or the referrer; never free text)."""

    children_in_household = "children-in-household"
    pregnancy = "pregnancy"
    disability_access = "disability-access"
    bsl = "bsl"
    interpreter = "interpreter"
    no_recourse_to_public_funds = "no-recourse-to-public-funds"
    safe_accommodation = "safe-accommodation"
    young_person = "young-person"


class AgeBand(StrEnum):
    """Age as routing needs it: bands, not dates of birth."""

    under_16 = "under-16"
    age_16_17 = "16-17"
    age_18_24 = "18-24"
    age_25_59 = "25-59"
    age_60_plus = "60-plus"


class Gender(StrEnum):
    female = "female"
    male = "male"
    non_binary = "non-binary"
    other = "other"
    unknown = "unknown"


class ServiceStatus(StrEnum):
    """HSDS-style service status."""

    active = "active"
    inactive = "inactive"
    temporarily_closed = "temporarily-closed"


class CoverageLevel(StrEnum):
    local = "local"
    regional = "regional"
    national = "national"
