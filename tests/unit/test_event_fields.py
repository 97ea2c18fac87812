"""Every field of every event is accounted for: a field that could carry text (any ``str``) must be on
the allow-list below, with why it carries no identifying data or free text. A new string field on an
event fails this test until someone decides, here, that it is safe to put on the bus."""

from __future__ import annotations

import enum
import types
from datetime import datetime
from typing import Any, Literal, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel

from shared.events import EVENT_TYPES, Event

# "Model.field": why it is safe. Codes come from closed vocabularies (shared.reference, intake's profile,
# notify's coded reasons); ids are directory or case identifiers, never a person's; "built" text is
# composed by a service from codes and directory names, never copied from a referral or a provider.
ALLOWED_TEXT: dict[str, str] = {
    "ReferralReceived.referrer_ods": "ODS code of the referring practice or trust (an organisation)",
    "CaseSummary.postcode_district": "outward code only (LS7), checked by intake's profile",
    "CaseSummary.area_codes": "ONS codes of local authorities and ICBs",
    "CaseSummary.postcode_sector": "postcode sector (LS7 3), derived by intake; never the inward code's letters",
    "CaseArea.sector": "the same postcode sector, resolved by the router from the gazetteer",
    "CaseArea.district": "outward code only (LS7)",
    "CaseArea.region": "ONS region code",
    "CaseArea.country": "ONS country code",
    "CaseArea.material": "ONS codes of local authorities and ICBs",
    "CaseArea.main": "ONS codes of the main authority and ICB",
    "CaseArea.source": "which gazetteer is in force (default or import), never a postcode",
    "AreaShare.code": "an ONS area code",
    "CaseRouted.referrer_note": "built by the router from its rules and area names (outside England, unknown area)",
    "CaseRouted.routing_summary": "built by the router (referrer_summary) from fixed phrases about kinds of service "
                                  "and public national helpline names; no referral or provider text",
    "CaseStatus.routing_summary": "the router's routing_summary, passed on unchanged",
    "CaseStatus.status_reason_code": "code: the router's NoOffer vocabulary (consent-refused, no-eligible-service, …)",
    "CaseSummary.needs": "code: shared.reference.Need",
    "CaseSummary.characteristics": "code: shared.reference.Community",
    "CaseSummary.abuse_types": "code: shared.reference.AbuseType",
    "CaseSummary.gender": "code: shared.reference.Gender",
    "CaseSummary.age_band": "code: shared.reference.AgeBand (never a date of birth)",
    "CaseSummary.language": "BCP 47 language code",
    "RoutingPreferences.worker_gender": "code: shared.reference.Gender",
    "RoutingPreferences.language": "BCP 47 language code",
    "RoutingPreferences.declined_service_types": "code: shared.reference.ServiceType",
    "ConsentState.organisations": "directory organisation ids",
    "ReferralCancelled.reason": "code: the profile's cancellation reasons (checked by intake)",
    "RoutedService.service_id": "directory id",
    "RoutedService.organisation_id": "directory id",
    "RoutedService.service_type": "code: shared.reference.ServiceType",
    "RoutedService.name": "the service's directory name (an organisation, not a person)",
    "RoutedService.reasons": "built by the router from codes and directory data",
    "RoutedService.by_and_for": "code: shared.reference.Community",
    "OfferMade.service_id": "directory id",
    "OfferMade.organisation_id": "directory id",
    "OfferMade.reason": "code (assigned-by-ops)",
    "OfferAccepted.service_id": "directory id",
    "OfferAccepted.organisation_id": "directory id",
    "OfferAccepted.reason": "unused (None)",
    "OfferAccepted.service_type": "code: shared.reference.ServiceType (intake's release check)",
    "OfferDeclined.service_id": "directory id",
    "OfferDeclined.organisation_id": "directory id",
    "OfferDeclined.reason": "code: notify's DeclineReason; the provider's own words stay in notify",
    "OfferExpired.service_id": "directory id",
    "OfferExpired.organisation_id": "directory id",
    "OfferExpired.reason": "code (no-response)",
    "OfferWithdrawn.service_id": "directory id",
    "OfferWithdrawn.organisation_id": "directory id",
    "OfferWithdrawn.reason": "code (consent-withdrawn, referral-cancelled)",
    "OfferContactStopped.service_id": "directory id",
    "OfferContactStopped.organisation_id": "directory id",
    "OfferContactStopped.reason": "code (consent-withdrawn, referral-cancelled)",
    "CaseStatus.business_status": "built by notify/router from codes and directory names (TaskView)",
    "CaseStatus.business_status_code": "code (offered, accepted, contact-made, …)",
    "CaseStatus.status_reason": "built from codes, directory names and rule text; never an ops note",
    "CaseStatus.outputs": "code: notify's Outcome",
    "CaseEscalated.reason": "built by router/notify from codes and ids; ops' own notes never travel",
    "DirectoryChanged.entity_id": "directory id",
}

SAFE_LEAVES = (UUID, datetime, int, bool, float, type(None))


def text_fields(model: type[BaseModel], owner: str, seen: set[type] | None = None) -> dict[str, str]:
    """Every field of ``model`` (and the models inside it) whose type admits a string: {"Owner.field": type}."""
    seen = seen if seen is not None else set()
    found: dict[str, str] = {}
    for name, field in model.model_fields.items():
        found.update(_walk(field.annotation, f"{owner}.{name}", seen))
    return found


def _walk(annotation: Any, where: str, seen: set[type]) -> dict[str, str]:
    origin = get_origin(annotation)
    if origin is Literal:
        return {}
    if origin in (Union, types.UnionType, tuple, list, frozenset, set):
        found: dict[str, str] = {}
        for arg in get_args(annotation):
            if arg is not Ellipsis:
                found.update(_walk(arg, where, seen))
        return found
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return {}
        seen.add(annotation)
        return text_fields(annotation, annotation.__name__, seen)
    if annotation is str:
        return {where: "str"}
    if isinstance(annotation, type) and issubclass(annotation, SAFE_LEAVES):
        return {}
    raise AssertionError(f"{where}: type {annotation!r} is not classified; say here whether it can carry text")


def every_text_field() -> dict[str, str]:
    found: dict[str, str] = {}
    seen: set[type] = set()
    for event_type in EVENT_TYPES.values():
        found.update(text_fields(event_type, event_type.__name__, seen))
    return found


def test_every_event_field_that_can_carry_text_is_on_the_allow_list() -> None:
    unlisted = sorted(set(every_text_field()) - set(ALLOWED_TEXT))
    assert unlisted == [], (
        "event fields that could carry free text or identity, not on the allow-list: "
        f"{unlisted}. Use a code, an id or an enum, or add the field to ALLOWED_TEXT with why it is safe."
    )


def test_the_allow_list_names_only_fields_that_exist() -> None:
    assert sorted(set(ALLOWED_TEXT) - set(every_text_field())) == []


def test_every_event_subclass_is_registered_for_the_walk() -> None:
    def concrete(cls: type[Event]) -> set[type[Event]]:
        found = set()
        for sub in cls.__subclasses__():
            if "subject" in sub.__dict__:
                found.add(sub)
            found |= concrete(sub)
        return found

    assert concrete(Event) == set(EVENT_TYPES.values())


def test_no_field_is_named_for_identifying_data() -> None:
    # Whatever its type: these names belong in intake's encrypted store only.
    banned = ("name", "birth", "dob", "address", "postcode", "phone", "telecom", "email", "nhs_number", "notes",
              "text", "note", "free_text", "contact")
    every = {path for event_type in EVENT_TYPES.values() for path in _all_fields(event_type, event_type.__name__, set())}
    offending = sorted(path for path in every if any(word == path.rsplit(".", 1)[1] or
                                                     path.rsplit(".", 1)[1].startswith(f"{word}_") or
                                                     path.rsplit(".", 1)[1].endswith(f"_{word}") for word in banned)
                       and path not in NAMED_BUT_SAFE)
    assert offending == []


# Names that sound identifying but are not: the district is an outward code, the sector an outward code
# and one digit, the name a service's, and the referrer's note is written by the router's rules (never by
# a person: ops notes stay in notify).
NAMED_BUT_SAFE = {"CaseSummary.postcode_district", "CaseSummary.postcode_sector", "RoutedService.name",
                  "CaseRouted.referrer_note"}


def _all_fields(model: type[BaseModel], owner: str, seen: set[type]) -> set[str]:
    paths = set()
    for name, field in model.model_fields.items():
        paths.add(f"{owner}.{name}")
        for arg in (field.annotation, *get_args(field.annotation)):
            for inner in (arg, *get_args(arg)):
                if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in seen:
                    seen.add(inner)
                    paths |= _all_fields(inner, inner.__name__, seen)
    return paths
