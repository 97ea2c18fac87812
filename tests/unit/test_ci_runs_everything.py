"""With CI set, a PostgreSQL variant or a Kubernetes check that would skip fails the run instead; locally
it skips and is listed. Shown by running pytest itself on the real tests with PostgreSQL pointed at a port
nothing listens on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def run_pytest(*args: str, ci: bool, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "CI"}
    # Only the virtualenv's own bin: no kubectl.
    environment.update(PATH=str(Path(sys.executable).parent), **env)
    if ci:
        environment["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300, check=False)


# The Kubernetes checks no longer skip without kubectl: they install kubectl (and checkov) themselves, and
# a tool that cannot be had fails them under CI and skips them elsewhere (tests/deploy/test_k8s_tools.py).
# The same CI rule as below also turns any skip of a test marked ``kubernetes`` into a failure.


def test_a_postgresql_variant_without_postgresql_fails_in_ci() -> None:
    result = run_pytest("tests/integration/test_directory_api.py", "-k", "postgresql", ci=True,
                        PATHWAYS_TEST_PG_PORT="1")
    assert result.returncode != 0, result.stdout
    assert "skipped in CI, which must run every postgres test: Skipped: no PostgreSQL at 127.0.0.1:1" in result.stdout
