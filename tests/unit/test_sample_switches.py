"""`pathways up` honours the documented sample switches, and --no-sample wins over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.launcher import System


def test_the_sample_loads_by_default_with_the_development_ops_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for switch in ("DIRECTORY_LOAD_SAMPLE", "INTAKE_SEED_SAMPLE_CLIENT"):
        monkeypatch.delenv(switch, raising=False)
    env = System(data_dir=tmp_path / ".data").environment()
    assert (env["DIRECTORY_LOAD_SAMPLE"], env["INTAKE_SEED_SAMPLE_CLIENT"]) == ("true", "true")
    assert env["DIRECTORY_SAMPLE_OPS_KEY_HASH"] and env["PATHWAYS_OPS_KEY"] not in env["DIRECTORY_SAMPLE_OPS_KEY_HASH"]


def test_a_switch_set_to_false_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DIRECTORY_LOAD_SAMPLE", "false")
    monkeypatch.delenv("INTAKE_SEED_SAMPLE_CLIENT", raising=False)
    env = System(data_dir=tmp_path / ".data").environment()
    assert (env["DIRECTORY_LOAD_SAMPLE"], env["INTAKE_SEED_SAMPLE_CLIENT"]) == ("false", "true")
    assert "DIRECTORY_SAMPLE_OPS_KEY_HASH" not in env


def test_no_sample_wins_over_the_switches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DIRECTORY_LOAD_SAMPLE", "true")
    monkeypatch.setenv("INTAKE_SEED_SAMPLE_CLIENT", "true")
    env = System(data_dir=tmp_path / ".data", sample=False).environment()
    assert (env["DIRECTORY_LOAD_SAMPLE"], env["INTAKE_SEED_SAMPLE_CLIENT"]) == ("false", "false")
    assert "DIRECTORY_SAMPLE_OPS_KEY_HASH" not in env
