"""Input models enforce every length limit their storage has: nothing is accepted that cannot be stored
and read back (a 600-character website once broke every public organisation read)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from sqlmodel import SQLModel

from services.directory.domain import OrganisationIn, ServiceIn
from services.directory.store import Organisation, Service
from services.notify.api import DeclineRequest
from services.notify.ops import AssignRequest, NoteRequest
from services.notify.store import EscalationNote, Offer


def _max_length(schema: dict[str, Any], defs: dict[str, Any]) -> int | None:
    """The longest string a JSON schema accepts (None: unbounded)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if "enum" in schema:
        return max(len(str(value)) for value in schema["enum"])
    if "maxLength" in schema:
        return int(schema["maxLength"])
    lengths = [_max_length(option, defs) for option in schema.get("anyOf", []) if option.get("type") != "null"]
    return max(lengths) if lengths and None not in lengths else None


@pytest.mark.parametrize(("model", "table", "renamed"), [
    (OrganisationIn, Organisation, {}),
    (ServiceIn, Service, {}),
    (DeclineRequest, Offer, {"text": "status_text"}),
    (NoteRequest, EscalationNote, {}),
    (AssignRequest, Offer, {}),
])
def test_every_stored_string_is_bounded_by_its_column(model: type[BaseModel], table: type[SQLModel],
                                                      renamed: dict[str, str]) -> None:
    document = model.model_json_schema()
    properties, defs = document["properties"], document.get("$defs", {})
    columns = table.__table__.columns  # type: ignore[attr-defined]
    for field, schema in properties.items():
        column = columns.get(renamed.get(field, field))
        limit = getattr(column.type, "length", None) if column is not None else None
        if limit is None:
            continue
        accepted = _max_length(schema, defs)
        assert accepted is not None and accepted <= limit, f"{model.__name__}.{field}: {accepted} > {limit}"
