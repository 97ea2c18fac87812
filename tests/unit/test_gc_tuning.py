"""A service's own process tunes the cyclic garbage collector once startup is done (issue 9); an app
started inside another process (a test's) leaves that process's collector alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shared import service

ROOT = Path(__file__).resolve().parents[2]


def test_the_startup_heap_is_frozen_and_cyclic_garbage_is_still_collected() -> None:
    # A process of its own: freezing would otherwise reach into the test runner's heap.
    script = textwrap.dedent(
        """
        import gc, weakref
        from shared.service import GC_YOUNG_THRESHOLD, tune_garbage_collector

        tune_garbage_collector()
        assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD, gc.get_threshold()

        class Node:
            pass

        def cycle():
            a, b = Node(), Node()
            a.other, b.other = b, a
            return weakref.ref(a)

        first = cycle()
        later = [cycle() for _ in range(3 * GC_YOUNG_THRESHOLD)]
        # Garbage in cycles is not left to pile up: the collector ran on its own at the threshold.
        assert first() is None, "a cycle made before the threshold was passed is still alive"
        assert sum(ref() is not None for ref in later) < GC_YOUNG_THRESHOLD
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_run_service_marks_the_app_as_owning_its_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi import FastAPI

    from shared.settings import ServiceSettings

    served: list[FastAPI] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **_: served.append(app))
    monkeypatch.setattr(service, "configure_logging", lambda _name: None)
    monkeypatch.setattr(sys, "setswitchinterval", lambda _interval: None)
    service.run_service(FastAPI, ServiceSettings())
    [app] = served
    assert app.state.owns_process is True  # what the lifespan reads before it tunes the collector
