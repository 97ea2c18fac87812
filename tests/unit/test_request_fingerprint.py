"""A request's idempotency fingerprint: one per request whatever its key order or whitespace, different for
a different request, and a record made by the previous release (standard-library canonical JSON) still
recognised, so a retry across an upgrade replays its first answer instead of a 409."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from services.intake.referrals import request_hash

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gp-referral.json"


def _reordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(item) for item in value]
    return value


def _previous_release(endpoint: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{endpoint}\n{canonical}".encode()).hexdigest()


def test_the_same_request_in_another_key_order_or_spacing_has_the_same_fingerprint() -> None:
    body = json.loads(EXAMPLE.read_text())
    respaced = json.loads(json.dumps(_reordered(body), indent=4))
    assert list(respaced) != list(body)
    first, again = request_hash("bundle", body), request_hash("bundle", respaced)
    assert first.value == again.value and len(first.value) == 64
    assert first.matches(again.value)
    assert "Bundle" not in repr(first) and first.value in repr(first)  # the request never shows in a repr


def test_a_different_request_or_endpoint_does_not_match() -> None:
    body = json.loads(EXAMPLE.read_text())
    changed = json.loads(EXAMPLE.read_text())
    changed["identifier"]["value"] = "another-bundle"
    assert not request_hash("bundle", changed).matches(request_hash("bundle", body).value)
    assert not request_hash("message", body).matches(request_hash("bundle", body).value)
    assert not request_hash("bundle", body).matches(_previous_release("bundle", changed))


def test_a_fingerprint_stored_by_the_previous_release_still_matches() -> None:
    body = json.loads(EXAMPLE.read_text())
    body["note"] = [{"text": "Café, naïve — “quoted” ✓"}]  # non-ASCII, written as UTF-8 by both forms
    assert request_hash("bundle", body).matches(_previous_release("bundle", _reordered(body)))


def test_an_integer_beyond_64_bits_keeps_one_consistent_fingerprint() -> None:
    body = {"resourceType": "Bundle", "total": 2**70, "b": 1.5e-7, "a": 1e16}
    fingerprint = request_hash("bundle", body)
    assert fingerprint.value == _previous_release("bundle", body)  # the form orjson cannot write
    assert request_hash("bundle", _reordered(body)).matches(fingerprint.value)
