"""Every public API of every service, fuzzed by schemathesis against the OpenAPI document it serves, with
valid credentials for the role each operation is for: no server error, every status code and content
type documented, every response body matching its schema.

The run is bounded (``PATHWAYS_FUZZ_EXAMPLES`` examples per operation, 20 by default) and derandomised
when ``CI`` is set (the hypothesis "ci" profile in tests/conftest.py). A longer local run:

    PATHWAYS_FUZZ_EXAMPLES=200 make test PYTEST_ARGS='tests/e2e/test_openapi_fuzz.py'
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.intake.app import SAMPLE_CLIENT
from services.launcher import System
from services.openapi_docs import APPS, DOCS, render

EXAMPLES = int(os.environ.get("PATHWAYS_FUZZ_EXAMPLES", "20"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# The sample provider's key (loaded with the sample directory by the launcher).
PROVIDER_KEY = "pw_sample_aire_valley_da"


def credentials(system: System, tags: list[str] | None) -> dict[str, str]:
    """The credential of the role an operation is for, by its OpenAPI tag."""
    env = system.environment()
    keys = {
        "fhir": SAMPLE_CLIENT["api_key"],
        "provider": PROVIDER_KEY,
        "ops": env["PATHWAYS_OPS_KEY"],
        "router": env["PATHWAYS_OPS_KEY"],
        # Internal routes each name the service that may call them: notify's credential reaches the
        # handoff and the directory's provider checks; the others answer it with 403, which is conformant.
        "internal": env["PATHWAYS_SERVICE_CREDENTIAL_NOTIFY"],
    }
    for tag in tags or ():
        if tag in keys:
            return {"Authorization": f"Bearer {keys[tag]}"}
    return {}


# The checked-in documents (docs/openapi/), which test_served_documents_are_the_checked_in_ones holds
# equal to what each service serves at /openapi.json.
SCHEMAS = {name: schemathesis.openapi.from_path(DOCS / f"{name}.json") for name in APPS}


@pytest.mark.parametrize("service", list(APPS))
def test_served_documents_are_the_checked_in_ones(system: System, service: str) -> None:
    served = httpx.get(f"{system.url(service)}/openapi.json", timeout=30)
    assert served.status_code == 200
    assert render(served.json()) == (DOCS / f"{service}.json").read_text(), "run `make openapi` and commit docs/openapi/"


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@schemathesis.pytest.parametrize(**SCHEMAS)
@FUZZ
def test_api(case: Any, system: System) -> None:
    service = case.operation.schema.raw_schema["info"]["title"].removeprefix("Pathways ")
    case.call_and_validate(base_url=system.url(service), headers=credentials(system, case.operation.tags),
                           checks=CHECKS, timeout=30)
