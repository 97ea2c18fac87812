"""Property-based fuzzing of intake's FHIR endpoints: malformed JSON, arbitrary JSON, and the example
Bundles with parts replaced, deleted or retyped. Whatever arrives, intake answers with a client error
(or accepts a Bundle that is still valid) and never with a 500."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES
from tests.integration.conftest import EHR

EXAMPLE_BODIES = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
ALLOWED = {200, 202, 400, 403, 404, 409, 413, 415, 422}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["", "Bundle", "message", "collection", "transaction", "active", "revoked", "Patient",
                     "ServiceRequest", "urn:uuid:x", "LS7 9ZZ", "1990-13-45", "2026-11-22T25:00:00Z"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=12), children, max_size=4)),
    max_leaves=12,
)
DELETE = object()


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


@st.composite
def mutated_bundles(draw: st.DrawFn) -> dict:
    body = copy.deepcopy(draw(st.sampled_from(EXAMPLE_BODIES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        candidates = paths(body)
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent = body
        for part in path[:-1]:
            parent = parent[part]
        replacement = draw(st.one_of(json_values, st.just(DELETE)))
        if replacement is DELETE:
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement
    return body


def target(body: Any) -> str:
    is_message = isinstance(body, dict) and body.get("type") == "message"
    return "/fhir/$process-message" if is_message else "/fhir/Bundle"


def assert_client_error_or_accepted(response) -> None:
    event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics shows the mix
    assert response.status_code in ALLOWED, (response.status_code, response.text[:500])
    assert response.json()["resourceType"] in {"Task", "OperationOutcome"}


@FUZZ
@given(body=mutated_bundles())
async def test_mutated_example_bundles_never_cause_a_server_error(intake, body):
    response = await intake.post(target(body), content=json.dumps(body), headers=EHR)
    assert_client_error_or_accepted(response)


@FUZZ
@given(body=json_values, path=st.sampled_from(["/fhir/Bundle", "/fhir/$process-message"]))
async def test_arbitrary_json_never_causes_a_server_error(intake, body, path):
    response = await intake.post(path, content=json.dumps(body), headers=EHR)
    assert_client_error_or_accepted(response)
    assert response.status_code != 202


@FUZZ
@given(raw=st.binary(max_size=300))
async def test_arbitrary_bytes_never_cause_a_server_error(intake, raw):
    response = await intake.post("/fhir/Bundle", content=raw, headers=EHR)
    assert response.status_code in {400, 422}, response.text[:300]


@FUZZ
@given(consent=json_values)
async def test_arbitrary_consent_updates_never_cause_a_server_error(intake, consent):
    body = consent if not isinstance(consent, dict) else {"resourceType": "Consent", **consent}
    response = await intake.put("/fhir/Consent/00000000-0000-4000-8000-000000000000", content=json.dumps(body),
                                headers=EHR)
    assert response.status_code in {400, 404, 422}, response.text[:300]
