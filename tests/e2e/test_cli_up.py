"""`pathways up` (what `make run` calls): starts everything, and Ctrl-C, `kill` or closing the terminal
leaves nothing behind."""

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


def start_up(cwd: Path, data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, int], str]:
    """Run `pathways up` until it says it is running; returns the process, its ports and what it printed."""
    ports = {name: free_port() for name in NAMES}
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env.update({f"{name.upper()}_PORT": str(port) for name, port in ports.items()})
    up = subprocess.Popen(
        [str(Path(sys.executable).parent / "pathways"), "up", "--data-dir", str(data_dir)],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        return up, ports, read_banner(up)
    except BaseException:
        up.send_signal(signal.SIGINT)
        up.wait(60)
        assert up.stdout is not None
        up.stdout.close()
        raise


def assert_ports_released(ports: dict[str, int]) -> None:
    deadline = time.monotonic() + 10
    while any(listening(p) for p in ports.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [name for name, port in ports.items() if listening(port)] == []


def test_up_prints_the_urls_and_ctrl_c_stops_every_process(tmp_path: Path):
    up, ports, output = start_up(tmp_path, tmp_path / ".data")
    try:
        assert f"http://127.0.0.1:{ports['intake']}" in output
        assert "curl -s -X POST" in output and "pw_sample_aire_valley_da" in output
        assert httpx.get(f"http://127.0.0.1:{ports['notify']}/readyz").status_code == 200
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
        assert up.stdout is not None
        up.stdout.close()
    assert code == 0
    assert_ports_released(ports)


def test_closing_the_terminal_stops_every_process_and_data_stays_in_the_data_dir(tmp_path: Path):
    (tmp_path / "work").mkdir()
    state = tmp_path / "state"
    up, ports, _output = start_up(tmp_path / "work", state)
    try:
        assert httpx.get(f"http://127.0.0.1:{ports['intake']}/readyz").status_code == 200
        # Every database under --data-dir, none beside it.
        assert {"intake.db", "router.db", "directory.db", "notify.db"} <= {p.name for p in state.glob("*.db")}
        assert not list(tmp_path.rglob(".data"))
    finally:
        # The terminal goes away: its output is gone, and the hang-up arrives.
        assert up.stdout is not None
        up.stdout.close()
        up.send_signal(signal.SIGHUP)
        up.wait(60)
    assert_ports_released(ports)
