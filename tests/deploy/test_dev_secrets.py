"""The dev overlay's Secrets come from one command, agree with each other, and are accepted by what
reads them: every service's NATS user by a real nats-server, intake's key ring by intake's settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest

from services.intake.settings import IntakeSettings
from services.launcher import free_port, nats_server_binary, stop_process, wait_until_ok
from shared.auth import identify_service
from shared.crypto import FieldCipher
from tests.deploy.k8s_tools import K8S
from tests.harness import assert_nats_refuses

SCRIPT = K8S / "overlays" / "dev" / "create_secrets.py"


def generated(cwd: Path) -> dict[str, dict[str, str]]:
    result = subprocess.run([sys.executable, str(SCRIPT)], cwd=cwd, capture_output=True, text=True, check=True)
    assert "ops key" in result.stderr
    listing: dict[str, Any] = json.loads(result.stdout)
    assert listing["kind"] == "List"
    return {item["metadata"]["name"]: item["stringData"] for item in listing["items"]}


def test_the_secrets_are_complete_consistent_and_kept_between_runs(tmp_path: Path) -> None:
    first = generated(tmp_path)
    assert set(first) == {"postgres", "nats-auth", *(f"pathways-{s}" for s in ("intake", "router", "directory", "notify"))}
    password = first["postgres"]["password"]
    for name in ("intake", "router", "directory", "notify"):
        data = first[f"pathways-{name}"]
        assert urlsplit(data["DATABASE_URL"]).password == password
        assert urlsplit(data["NATS_URL"]).username == name
        # Each service its own credential; every service accepts all four, by digest only.
        assert data["PATHWAYS_SERVICE_CREDENTIALS"] == first["pathways-intake"]["PATHWAYS_SERVICE_CREDENTIALS"]
        assert identify_service(data["PATHWAYS_SERVICE_CREDENTIALS"], data["PATHWAYS_SERVICE_CREDENTIAL"]) == name
        assert data["PATHWAYS_SERVICE_CREDENTIAL"] not in data["PATHWAYS_SERVICE_CREDENTIALS"]
        assert "PATHWAYS_SERVICE_TOKEN" not in data
    assert len(first["pathways-directory"]["DIRECTORY_SAMPLE_OPS_KEY_HASH"]) == 64  # a hash, never the key
    assert generated(tmp_path) == first  # the same values on a second run: stored data stays readable


def test_intake_reads_its_key_ring_from_the_mounted_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    for key, value in generated(tmp_path)["pathways-intake"].items():
        (mounted / key).write_text(value)
    for variable in ("INTAKE_ENCRYPTION_KEYS", "INTAKE_ACTIVE_KEY_ID", "DATABASE_URL", "NATS_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PATHWAYS_SECRETS_DIR", str(mounted))
    settings = IntakeSettings()
    FieldCipher.from_config(settings.encryption_keys.get_secret_value(), settings.active_key_id)
    assert settings.nats_url.get_secret_value().startswith("nats://intake:")


async def test_every_service_s_nats_user_is_let_in_and_no_other(tmp_path: Path) -> None:
    secrets = generated(tmp_path)
    (tmp_path / "auth.conf").write_text(secrets["nats-auth"]["auth.conf"])
    port, monitor = free_port(), free_port()
    (tmp_path / "nats.conf").write_text(f'listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\ninclude "auth.conf"\n')
    process = subprocess.Popen([nats_server_binary(), "-c", str(tmp_path / "nats.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_ok(f"http://127.0.0.1:{monitor}/healthz", 20, process)
        for name in ("intake", "router", "directory", "notify"):
            url = secrets[f"pathways-{name}"]["NATS_URL"].replace("@nats:4222", f"@127.0.0.1:{port}")
            nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
            await nc.close()
        await assert_nats_refuses(f"nats://intake:wrong@127.0.0.1:{port}")
    finally:
        stop_process(process)
