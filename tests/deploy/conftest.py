"""checkov runs once for the whole deploy suite: both rendered overlays and the Dockerfile."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.k8s_tools import OVERLAYS, ROOT, checkov_findings, rendered


@pytest.fixture(scope="session")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[dict[str, Any]]]]:
    directory = tmp_path_factory.mktemp("rendered")
    files = {"Dockerfile": ROOT / "Dockerfile"}
    for overlay in OVERLAYS:
        files[overlay] = directory / f"{overlay}.yaml"
        files[overlay].write_text(rendered(overlay))
    return checkov_findings(files)
