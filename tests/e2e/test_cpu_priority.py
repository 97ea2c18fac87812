"""On one machine, router and notify yield the CPU to intake: an EHR waits on intake's answer, while the
other two work from JetStream's durable queue (services/launcher.py, PATHWAYS_BACKGROUND_NICE)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.launcher import BACKGROUND_NICE_DEFAULT, System, background_nice, lower_priority


def autogroup_nice(pid: int) -> int | None:
    """The nice value of the process's scheduling group (``/autogroup-N nice V``), where the kernel has one."""
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    except (OSError, ValueError):
        return None


def test_router_and_notify_run_below_intake_and_directory(system: System):
    nice = {name: os.getpriority(os.PRIO_PROCESS, p.pid) for name, p in system.processes.items()}
    inherited = os.getpriority(os.PRIO_PROCESS, 0)  # the test run's own (0 unless started under `nice`)
    lowered = max(inherited, system.background_nice)  # BACKGROUND_NICE_DEFAULT unless the environment says
    assert nice == {"directory": inherited, "intake": inherited, "router": lowered, "notify": lowered}
    groups = {name: autogroup_nice(p.pid) for name, p in system.processes.items()}
    if groups["intake"] is not None:  # the kernel schedules by session (autogroup): each service has its own
        assert groups == {"directory": 0, "intake": 0, "router": system.background_nice,
                          "notify": system.background_nice}


def test_lower_priority_reaches_threads_the_process_starts_afterwards():
    # The child waits for a line before it starts a thread, which reports its own nice value.
    script = (
        "import os, sys, threading; sys.stdin.readline(); "
        "t = threading.Thread(target=lambda: print(os.getpriority(os.PRIO_PROCESS, 0)), daemon=True); "
        "t.start(); t.join()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    lower_priority(child.pid, 19)
    out, _ = child.communicate("go\n", timeout=30)
    assert int(out) == 19


def test_the_setting_is_checked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATHWAYS_BACKGROUND_NICE", "0")
    assert background_nice() == 0
    monkeypatch.delenv("PATHWAYS_BACKGROUND_NICE")
    assert background_nice() == BACKGROUND_NICE_DEFAULT
    for bad in ("-5", "20", "high"):
        monkeypatch.setenv("PATHWAYS_BACKGROUND_NICE", bad)
        with pytest.raises(ValueError, match="PATHWAYS_BACKGROUND_NICE must be a whole number from 0 to 19"):
            background_nice()
