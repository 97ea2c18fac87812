"""Search parameters shared by the FHIR API and the provider API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.sql import ColumnElement

PREFIXES = ("gt", "ge", "lt", "le", "eq")


class InvalidSearch(ValueError):
    pass


def last_updated_condition(column: Any, value: str) -> ColumnElement[bool]:
    """``_lastUpdated=[gt|ge|lt|le|eq]<instant>`` (FHIR search prefixes; no prefix means eq) as a condition.

    An instant without a time zone is refused rather than guessed: guessing could hide a change.
    """
    prefix = value[:2] if value[:2] in PREFIXES else "eq"
    raw = value[2:] if value[:2] == prefix else value
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSearch("_lastUpdated must be [gt|ge|lt|le|eq]<ISO 8601 instant>.") from None
    if at.tzinfo is None:
        raise InvalidSearch("_lastUpdated needs a time zone (for example 'Z').")
    conditions = {"gt": column > at, "ge": column >= at, "lt": column < at, "le": column <= at, "eq": column == at}
    return conditions[prefix]  # type: ignore[no-any-return]
