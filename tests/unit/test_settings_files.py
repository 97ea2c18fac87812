"""Secrets as mounted files (a Kubernetes Secret volume): one file per setting, named as its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.intake.settings import IntakeSettings
from services.notify.settings import NotifySettings


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in ("DATABASE_URL", "PATHWAYS_SERVICE_CREDENTIAL", "INTAKE_ENCRYPTION_KEYS", "INTAKE_ACTIVE_KEY_ID",
                     "NATS_URL", "NATS_STREAM_REPLICAS"):
        monkeypatch.delenv(variable, raising=False)
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "DATABASE_URL").write_text("postgresql+asyncpg://intake@db.example/pathways")
    (directory / "PATHWAYS_SERVICE_CREDENTIAL").write_text("token-from-a-file")
    (directory / "INTAKE_ENCRYPTION_KEYS").write_text("k1:c2VjcmV0")
    (directory / "INTAKE_ACTIVE_KEY_ID").write_text("k1\n")  # as "kubectl create secret --from-file" keeps it
    # What a Secret volume also holds: the kubelet's own bookkeeping, which must be ignored.
    (directory / "..data").mkdir()
    monkeypatch.setenv("PATHWAYS_SECRETS_DIR", str(directory))
    return directory


def test_settings_are_read_from_the_secrets_directory(secrets_dir: Path) -> None:
    settings = IntakeSettings()
    assert settings.database_url == "postgresql+asyncpg://intake@db.example/pathways"
    assert settings.service_credential.get_secret_value() == "token-from-a-file"
    assert settings.encryption_keys.get_secret_value() == "k1:c2VjcmV0"
    assert settings.active_key_id == "k1"
    # Every service reads the shared names; a file for one service's prefix is not another's.
    notify = NotifySettings()
    assert notify.service_credential.get_secret_value() == "token-from-a-file"


def test_the_environment_wins_over_a_file(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHWAYS_SERVICE_CREDENTIAL", "token-from-the-environment")
    assert IntakeSettings().service_credential.get_secret_value() == "token-from-the-environment"


def test_without_a_secrets_directory_nothing_is_read_from_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATHWAYS_SECRETS_DIR", raising=False)
    monkeypatch.delenv("PATHWAYS_SERVICE_CREDENTIAL", raising=False)
    assert IntakeSettings().service_credential.get_secret_value() == ""


def test_stream_replicas_come_from_the_environment_and_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_STREAM_REPLICAS", "3")
    assert NotifySettings().nats_stream_replicas == 3
    monkeypatch.setenv("NATS_STREAM_REPLICAS", "0")
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        NotifySettings()
