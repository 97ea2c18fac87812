"""JetStream keeps case summaries only as long as configured (issue 13): the streams get ``max_age`` and
size limits from settings, an existing stream (made by an older release, kept for ever) is updated when
a service starts, and a full stream refuses new events instead of dropping ones not yet consumed."""

from __future__ import annotations

from uuid import uuid4

import nats.js.errors
import pytest
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from services.launcher import NatsServer
from services.router.settings import RouterSettings
from shared.bus import DAY, DLQ_STREAM, EVENTS_STREAM, EVENTS_SUBJECTS, Bus, StreamLimits
from shared.events import CaseEscalated
from tests.harness import eventually


async def started(url: str, limits: StreamLimits | None, name: str = "test") -> Bus:
    bus = Bus(url, name=name, limits=limits)
    await bus.start()
    await bus.wait_ready(timeout=15)
    return bus


async def test_the_settings_decide_how_long_events_and_dead_letters_are_kept(
        nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_EVENTS_MAX_AGE_DAYS", "3")
    monkeypatch.setenv("NATS_DEAD_LETTERS_MAX_AGE_DAYS", "21")
    monkeypatch.setenv("NATS_STREAM_MAX_BYTES", str(256 << 20))
    bus = await started(nats_server.url, RouterSettings().stream_limits())
    try:
        events = (await bus.js.stream_info(EVENTS_STREAM)).config
        dead_letters = (await bus.js.stream_info(DLQ_STREAM)).config
        assert events.max_age == pytest.approx(3 * DAY) and dead_letters.max_age == pytest.approx(21 * DAY)
        assert events.max_bytes == dead_letters.max_bytes == 256 << 20
        assert events.discard == dead_letters.discard == DiscardPolicy.NEW
        assert events.max_msg_size == 1 << 20
    finally:
        await bus.close()


def test_the_defaults_keep_events_two_weeks_and_refuse_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("NATS_EVENTS_MAX_AGE_DAYS", "NATS_DEAD_LETTERS_MAX_AGE_DAYS", "NATS_STREAM_MAX_BYTES"):
        monkeypatch.delenv(variable, raising=False)
    limits = RouterSettings().stream_limits()
    assert (limits.events_max_age, limits.dead_letters_max_age) == (14 * DAY, 30 * DAY)
    monkeypatch.setenv("NATS_EVENTS_MAX_AGE_DAYS", "0")  # 0 would mean "for ever" to JetStream
    with pytest.raises(ValueError, match="greater than 0"):
        RouterSettings()


async def test_a_stream_made_without_limits_gets_them_when_a_service_starts(nats_server: NatsServer) -> None:
    # As an older release made it: no max_age, so every case summary was kept for ever.
    old = Bus(nats_server.url, name="old")
    await old.connect_once()
    assert old.nc is not None
    await old.nc.jetstream().add_stream(StreamConfig(name=EVENTS_STREAM, subjects=list(EVENTS_SUBJECTS),
                                                     storage=StorageType.FILE))
    assert not (await old.js.stream_info(EVENTS_STREAM)).config.max_age
    await old.close()

    service = await started(nats_server.url, StreamLimits(events_max_age=7 * DAY))
    try:
        assert (await service.js.stream_info(EVENTS_STREAM)).config.max_age == pytest.approx(7 * DAY)
    finally:
        await service.close()
    # A tool's bus (no limits of its own) leaves the service's limits as they are.
    probe = await started(nats_server.url, None, "probe")
    try:
        assert (await probe.js.stream_info(EVENTS_STREAM)).config.max_age == pytest.approx(7 * DAY)
    finally:
        await probe.close()


async def test_an_event_older_than_max_age_is_gone(nats_server: NatsServer) -> None:
    bus = await started(nats_server.url, StreamLimits(events_max_age=1.0))
    try:
        await bus.publish(CaseEscalated(case_id=uuid4(), reason="test"))
        assert await bus.stream_depth(EVENTS_STREAM) == 1

        async def expired() -> bool:
            return await bus.stream_depth(EVENTS_STREAM) == 0

        await eventually(expired, timeout=15)
    finally:
        await bus.close()


async def test_a_full_stream_refuses_new_events_and_keeps_the_old(nats_server: NatsServer) -> None:
    bus = await started(nats_server.url, StreamLimits(max_bytes=4096))
    try:
        first = CaseEscalated(case_id=uuid4(), reason="first")
        await bus.publish(first)
        with pytest.raises(nats.js.errors.APIError):
            for _ in range(100):
                await bus.publish(CaseEscalated(case_id=uuid4(), reason="x" * 200))
        # Nothing was dropped to make room: the publisher was told (the outbox keeps and retries it).
        stored = await bus.js.get_msg(EVENTS_STREAM, seq=1)
        assert str(first.event_id).encode() in (stored.data or b"")
    finally:
        await bus.close()
