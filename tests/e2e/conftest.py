"""The whole system as real processes, started once per test module, and a polling helper."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from services.launcher import System, free_port


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    ports = {name: free_port() for name in ("intake", "router", "directory", "notify", "nats", "nats_monitor")}
    running = System(data_dir=tmp_path_factory.mktemp("e2e") / ".data", ports=ports)
    running.start(timeout=90)
    yield running
    running.stop()
    assert not [p for p in running.processes.values() if p.poll() is None]


def poll(fetch, until, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting; last value: {value!r}")
        time.sleep(0.1)


def read_banner(up: subprocess.Popen[str], timeout: float = 90.0) -> str:
    """What `pathways up` printed until it said it is running (it fails if the process ends first)."""
    output = ""
    deadline = time.monotonic() + timeout
    assert up.stdout is not None
    while "Press Ctrl-C to stop." not in output:
        line = up.stdout.readline()
        assert line or up.poll() is None, output
        output += line
        assert time.monotonic() < deadline, output
    return output
