"""The browser harness itself: the accessibility check really finds violations (a check that passes
everything would let every page through)."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import check_accessibility


def test_the_accessibility_check_reports_a_control_without_a_label(page: Any):
    page.set_content('<!doctype html><html lang="en"><title>t</title><main><input type="text"></main></html>')
    assert [v["id"] for v in check_accessibility(page)] == ["label"]
