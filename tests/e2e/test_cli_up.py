"""`pathways up` (what `make run` calls): starts everything, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.launcher import free_port
from tests.e2e.conftest import read_banner

NAMES = ("intake", "router", "directory", "notify", "nats", "nats_monitor")


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_prints_the_urls_and_ctrl_c_stops_every_process(tmp_path: Path):
    ports = {name: free_port() for name in NAMES}
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env.update({f"{name.upper()}_PORT": str(port) for name, port in ports.items()})
    up = subprocess.Popen(
        [str(Path(sys.executable).parent / "pathways"), "up", "--data-dir", str(tmp_path / ".data")],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        output = read_banner(up)
        assert f"http://127.0.0.1:{ports['intake']}" in output
        assert "curl -s -X POST" in output and "pw_sample_aire_valley_da" in output
        assert httpx.get(f"http://127.0.0.1:{ports['notify']}/readyz").status_code == 200
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
        assert up.stdout is not None
        up.stdout.close()
    assert code == 0
    deadline = time.monotonic() + 10
    while any(listening(p) for p in ports.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [name for name, port in ports.items() if listening(port)] == []
