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
    assert settings.database_url.get_secret_value() == "postgresql+asyncpg://intake@db.example/pathways"
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


def test_no_secret_shows_when_settings_are_printed_or_dumped(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://intake:Nats-Pw-2231@nats:4222")
    (secrets_dir / "DATABASE_URL").write_text("postgresql+asyncpg://intake:Db-Pw-8812@db.example/pathways")
    settings = IntakeSettings()
    shown = repr(settings) + str(settings) + settings.model_dump_json() + str(settings.model_dump())
    for secret in ("Nats-Pw-2231", "Db-Pw-8812", "token-from-a-file", "c2VjcmV0"):
        assert secret not in shown
    # What the services use is the real value.
    assert settings.nats_url.get_secret_value() == "nats://intake:Nats-Pw-2231@nats:4222"
    assert settings.resolved_database_url() == "postgresql+asyncpg://intake:Db-Pw-8812@db.example/pathways"


def test_a_variable_can_name_the_file_that_holds_its_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("DATABASE_URL", "PATHWAYS_SERVICE_CREDENTIAL", "INTAKE_ENCRYPTION_KEYS", "PATHWAYS_SECRETS_DIR"):
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / "db").write_text("postgresql+asyncpg://intake:Db-Pw-4410@db.example/pathways\n")
    (tmp_path / "keys").write_text("k1:c2VjcmV0\n")
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "db"))
    monkeypatch.setenv("INTAKE_ENCRYPTION_KEYS_FILE", str(tmp_path / "keys"))
    settings = IntakeSettings()
    assert settings.resolved_database_url() == "postgresql+asyncpg://intake:Db-Pw-4410@db.example/pathways"
    assert settings.encryption_keys.get_secret_value() == "k1:c2VjcmV0"
    # The variable itself wins over its file.
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///x.db")
    assert IntakeSettings().resolved_database_url() == "sqlite+aiosqlite:///x.db"
    # A file that cannot be read stops the service, saying which variable, never a value.
    monkeypatch.setenv("INTAKE_ENCRYPTION_KEYS_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="INTAKE_ENCRYPTION_KEYS_FILE: cannot read"):
        IntakeSettings()
