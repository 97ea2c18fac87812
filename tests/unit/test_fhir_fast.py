"""The FHIR validation fast path (``shared.fhir_fast``) never accepts what the full fhir.resources
validation rejects, and when it accepts it builds the very model the full validation builds: for every
example, and for the examples with parts replaced, deleted, retyped, nulled, doubled or extended."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.intake import domain
from shared.fhir import FhirError
from shared.fhir_fast import fast_validate
from tests.conftest import EXAMPLES

EXAMPLE_BODIES = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
CONSENTS = [
    e["resource"] for b in EXAMPLE_BODIES for e in b["entry"] if e["resource"]["resourceType"] == "Consent"
]
MUTATIONS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DELETE = object()

# Values that sit on the edges of FHIR's primitive types and of what the fast path handles itself.
edge_values = st.sampled_from(
    [
        None,
        "",
        " ",
        "a  b",
        " leading",
        "trailing ",
        "x\ny",
        "\u0001",
        0,
        1,
        -1,
        2**40,
        1.5,
        1.0,
        True,
        False,
        [],
        [None],
        {},
        ["x"],
        [{}],
        "1990",
        "1990-04",
        "1990-04-31",
        "1990-13-45",
        "1990-02-29",
        "2000-02-29",
        "1990-04-02T10:00:00Z",
        "2026-11-22T25:00:00Z",
        "2026-11-22T10:00:00",
        "2026-11-22T10:00:60Z",
        "2026-11-22T10:00:00.123+01:00",
        "true",
        "false",
        "12",
        "-3",
        "+4",
        "07",
        "urn:uuid:x",
        "Patient/1",
        "Patient",
        "Bundle",
        "Flag",
        "HumanName",
        "Resource",
        "DomainResource",
        "active",
        "revoked",
        "entered-in-error",
        "home",
        "female",
        "LS7 9ZZ",
        "https://example.org/x",
        "an id",
        "abc-1.2",
        "x" * 65,
    ]
).map(copy.deepcopy)  # a fresh list or dict each time: later mutations must not change the strategy
scalars = st.one_of(
    edge_values, st.booleans(), st.integers(min_value=-(2**40), max_value=2**40), st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "url",
                    "value",
                    "valueCode",
                    "valueString",
                    "system",
                    "code",
                    "text",
                    "reference",
                    "resourceType",
                    "id",
                    "extension",
                    "_value",
                ]
            ),
            children,
            max_size=3,
        ),
    ),
    max_leaves=8,
)
# Keys the FHIR models know somewhere (a second value of a choice element, an extension sibling, a
# field addressed by its Python name), and keys no model knows.
extra_keys = st.sampled_from(
    [
        "valueString",
        "valueBoolean",
        "valueCode",
        "valueInteger",
        "valueCodeableConcept",
        "_value",
        "_status",
        "_birthDate",
        "fhir_comments",
        "class_fhir",
        "resourceType",
        "id",
        "extension",
        "modifierExtension",
        "contained",
        "meta",
        "text",
        "unknownElement",
        "birthDate",
        "gender",
        "status",
        "display",
        "use",
        "period",
    ]
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def containers(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if isinstance(node, dict) else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += containers(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += containers(value, (*prefix, index))
    return found


def at(body: Any, path: tuple) -> Any:
    for part in path:
        body = body[part]
    return body


def leaves(node: Any, prefix: tuple = ()) -> list[tuple]:
    return [path for path in paths(node, prefix) if not isinstance(at(node, path), dict | list)]


@st.composite
def mutated(draw: st.DrawFn, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    body = copy.deepcopy(draw(st.sampled_from(bodies)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(
            st.sampled_from(["leaf", "leaf", "leaf", "delete", "delete", "any", "wrap", "copy", "add"])
        )
        if kind == "add":
            target = at(body, draw(st.sampled_from(containers(body))))
            target[draw(extra_keys)] = copy.deepcopy(
                draw(st.one_of(scalars, json_values, st.sampled_from(list(target.values()) or [None])))
            )
            continue
        candidates = leaves(body) if kind == "leaf" else paths(body)
        if not candidates:
            continue
        path = draw(st.sampled_from(candidates))
        parent, last = at(body, path[:-1]), path[-1]
        if kind == "leaf":  # a primitive replaced by another (mostly still valid FHIR)
            parent[last] = draw(scalars)
        elif kind == "delete":
            del parent[last]
        elif kind == "wrap":
            parent[last] = [parent[last]]
        elif kind == "copy":  # the same value somewhere else: a sibling of another type
            parent[last] = copy.deepcopy(at(body, draw(st.sampled_from(paths(body)))))
        else:
            parent[last] = draw(json_values)
    return body


def assert_same_answer(model: type[Bundle | Consent], body: dict[str, Any], *, count: bool = False) -> None:
    fast = fast_validate(model, body)
    if count:
        event("fast path accepted" if fast is not None else "full validation")
    if fast is None:
        return
    try:
        full = model.model_validate(body)
    except (ValidationError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        pytest.fail(f"the fast path accepted what the full validation rejects: {exc}")
    assert fast == full
    assert fast.model_fields_set == full.model_fields_set
    assert fast.model_dump(mode="json") == full.model_dump(mode="json")
    assert fast.model_dump_json() == full.model_dump_json()


@pytest.mark.parametrize("body", EXAMPLE_BODIES, ids=lambda b: b["identifier"]["value"])
def test_every_example_takes_the_fast_path_and_builds_the_same_bundle(body):
    assert fast_validate(Bundle, body) is not None
    assert_same_answer(Bundle, body)


@pytest.mark.parametrize("body", CONSENTS, ids=lambda b: b.get("id", "consent"))
def test_consents_take_the_fast_path_and_build_the_same_consent(body):
    assert fast_validate(Consent, body) is not None
    assert_same_answer(Consent, body)


@MUTATIONS
@given(mutated(EXAMPLE_BODIES))
def test_a_mutated_bundle_is_accepted_by_the_fast_path_only_as_the_full_validation_accepts_it(body):
    assert_same_answer(Bundle, body, count=True)


@MUTATIONS
@given(mutated(CONSENTS))
def test_a_mutated_consent_is_accepted_by_the_fast_path_only_as_the_full_validation_accepts_it(body):
    assert_same_answer(Consent, body, count=True)


def _answer(body: dict[str, Any], *, as_sent: bool = False) -> Any:
    try:
        return domain.parse_submission(
            domain.parse_bundle(body), now=domain.datetime(2026, 11, 1, tzinfo=domain.UTC),
            body=copy.deepcopy(body) if as_sent else None,
        )
    except FhirError as exc:
        return exc.status, [issue.as_fhir() for issue in exc.issues]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(mutated(EXAMPLE_BODIES))
def test_intake_answers_a_bundle_the_same_with_or_without_the_fast_path(monkeypatch, body):
    with_fast = _answer(body)
    with monkeypatch.context() as patch:
        patch.setattr(domain, "fast_validate", lambda model, body: None)
        without = _answer(body)
    assert with_fast == without


AS_SENT = ("name", "address", "telecom")
ETHNIC_CATEGORY = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(EXAMPLE_BODIES))
def test_the_survivor_s_details_are_stored_as_sent_and_nothing_else_changes(body):
    # Intake copies the Patient's name, address and telecom from the JSON it validated rather than
    # serialising the validated model again (issue 9): the same answer, with those details as sent.
    sent, serialised = _answer(body, as_sent=True), _answer(body)
    if not isinstance(sent, domain.ParsedReferral):
        assert sent == serialised
        return
    patient = next(e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Patient")
    ethnic = next((e.get("valueCodeableConcept") for e in patient.get("extension", [])
                   if e["url"] == ETHNIC_CATEGORY), None)
    assert {k: sent.identifying[k] for k in AS_SENT} == {k: patient.get(k, []) for k in AS_SENT}
    assert sent.identifying["ethnic_category"] == ethnic
    for k in (*AS_SENT, "ethnic_category"):
        sent.identifying[k] = serialised.identifying[k]
    assert sent == serialised


def test_a_date_time_in_the_survivor_s_details_keeps_the_precision_it_was_sent_with():
    body = json.loads((EXAMPLES / "gp-referral.json").read_text())
    patient = next(e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["address"][0]["period"] = {"start": "2020-01", "end": "2024-03-05T10:00:00.120+01:00"}
    parsed = _answer(body, as_sent=True)
    # fhir.resources would write "2024-03-05T10:00:00.120000+01:00": the sender's own form is kept.
    assert parsed.identifying["address"][0]["period"] == {"start": "2020-01", "end": "2024-03-05T10:00:00.120+01:00"}


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b["entry"][0]["resource"].update(birthDate=None),
        lambda b: b["entry"][0].update(resource={"resourceType": "HumanName", "family": "X"}),
        lambda b: b["entry"][0]["resource"].update(_gender={"extension": [{"url": "x", "valueString": "y"}]}),
        lambda b: b["entry"][0]["resource"].update(unknownElement=1),
        lambda b: b["entry"].append(None),
        lambda b: b.update(entry=[]),
    ],
)
def test_what_the_fast_path_leaves_alone_goes_to_the_full_validation(change):
    body = copy.deepcopy(EXAMPLE_BODIES[0])
    change(body)
    assert fast_validate(Bundle, body) is None
