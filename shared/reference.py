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

