"""Routing thresholds are configuration, per area where local protocols differ."""

from __future__ import annotations

import pytest

from services.router.settings import AreaProtocol, RouterSettings


def test_area_protocols_come_from_the_environment_and_the_most_local_code_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROUTER_PROTOCOL", '{"escalate_after_failed_offers": 4}')
    monkeypatch.setenv(
        "ROUTER_AREA_PROTOCOLS",
        '{"E08000035": {"escalate_after_failed_offers": 2, "sla_hours": {"high": 2}},'
        ' "E54000054": {"escalate_after_failed_offers": 3}}',
    )
    settings = RouterSettings()
    assert settings.protocol.escalate_after_failed_offers == 4
    leeds = settings.protocol_for(["E08000035", "E54000054", "LS7"])
    assert leeds == AreaProtocol(escalate_after_failed_offers=2, sla_hours={"high": 2.0})
    assert settings.protocol_for(["E08000032", "E54000054"]).escalate_after_failed_offers == 3
    assert settings.protocol_for(["E06000001"]) == settings.protocol


def test_a_protocol_must_escalate_after_at_least_one_failed_offer() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        AreaProtocol(escalate_after_failed_offers=0)
