"""A missing tool fails the manifest checks in CI and only skips them on a developer's machine."""

from __future__ import annotations

import pytest

from tests.deploy.k8s_tools import unavailable


def test_a_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="checkov missing.*CI is set"):
        unavailable("checkov missing")


def test_a_missing_tool_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="checkov missing"):
        unavailable("checkov missing")
