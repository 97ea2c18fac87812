"""Settings: one pydantic-settings object per service, each with its own environment prefix.

A few values are the same for every service and are read without a prefix, so that one variable
configures the whole system (``NATS_URL``, ``DATABASE_URL``, ``PATHWAYS_ENV``, ``PATHWAYS_SERVICE_CREDENTIALS``).
In Kubernetes each service runs in its own pod with its own environment, so these can still differ
per service there.

Secrets can also come from files, one per setting, named as its environment variable (a mounted
Kubernetes Secret): ``PATHWAYS_SECRETS_DIR`` names the directory. Environment variables win over files.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SecretsSettingsSource, SettingsConfigDict

DATA_DIR = Path(".data")
SECRETS_DIR_VARIABLE = "PATHWAYS_SECRETS_DIR"


class Environment(StrEnum):
    development = "development"
    production = "production"


class ServiceSettings(BaseSettings):
    """What every service needs: its bus, its database, its credentials for internal calls."""

    service_name: ClassVar[str] = "service"
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    environment: Environment = Field(
        default=Environment.production, validation_alias=AliasChoices("PATHWAYS_ENV", "environment")
    )
    # One URL, or several separated by commas (the client fails over between them).
    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias=AliasChoices("NATS_URL", "nats_url"))
    # CA certificate (a mounted file) for tls:// NATS URLs whose servers use a private CA.
    nats_ca_file: str = Field(default="", validation_alias=AliasChoices("NATS_CA_FILE", "nats_ca_file"))
    # Copies of each stream kept by a NATS cluster: 3 in production, so losing a node loses nothing.
    nats_stream_replicas: int = Field(
        default=1, ge=1, le=5, validation_alias=AliasChoices("NATS_STREAM_REPLICAS", "nats_stream_replicas")
    )
    database_url: str = Field(default="", validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    # Internal HTTP calls between the services (issue 13): each service presents its OWN credential, and
    # accepts the services named in ``service_credentials`` ("name:sha256-hex,…", several per name while a
    # credential is rotated), so a callee knows which service called and holds nothing it could call as.
    service_credential: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("PATHWAYS_SERVICE_CREDENTIAL", "service_credential")
    )
    service_credentials: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("PATHWAYS_SERVICE_CREDENTIALS", "service_credentials")
    )
    host: str = "127.0.0.1"
    port: int = 8000
    # Consumers: deliveries before a message goes to the dead-letter subject.
    max_deliver: int = 5
    # Under load: requests in progress at once, how long a request may wait for a slot and then for a
    # database connection (or SQLite's writer), and the Retry-After of the 503 sent when it could not.
    max_concurrent_requests: int = 16
    request_queue_seconds: float = 2.0
    database_wait_seconds: float = 2.0
    busy_retry_after_seconds: int = 1
    otel_exporter: str = Field(
        default="none", validation_alias=AliasChoices("PATHWAYS_OTEL_EXPORTER", "otel_exporter")
    )
    # Web pages (shared/web): Fernet keys for the session cookie, comma-separated (the first encrypts,
    # all decrypt, so keys rotate); how long an idle session lasts; the longest a session lasts at all;
    # where the quick exit goes (a neutral site).
    web_session_keys: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("PATHWAYS_WEB_SESSION_KEYS", "web_session_keys")
    )
    web_idle_minutes: int = Field(
        default=15, ge=1, le=240, validation_alias=AliasChoices("PATHWAYS_WEB_IDLE_MINUTES", "web_idle_minutes")
    )
    web_max_session_hours: int = Field(
        default=10, ge=1, le=24,
        validation_alias=AliasChoices("PATHWAYS_WEB_MAX_SESSION_HOURS", "web_max_session_hours"),
    )
    web_exit_url: str = Field(
        default="https://www.bbc.co.uk/weather",
        validation_alias=AliasChoices("PATHWAYS_WEB_EXIT_URL", "web_exit_url"),
    )
    # Where the SQLite databases live (``pathways up --data-dir`` sets it for every service).
    data_dir: Path = Field(default=DATA_DIR, validation_alias=AliasChoices("PATHWAYS_DATA_DIR", "data_dir"))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only when asked for: pydantic-settings warns about a configured directory that is missing.
        secrets_dir = os.environ.get(SECRETS_DIR_VARIABLE)
        if secrets_dir:
            file_secret_settings = SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir)
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    def resolved_database_url(self) -> str:
        """The service's own database: SQLite under the data directory unless a URL is configured."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{self.data_dir / (self.service_name + '.db')}"

    def service_headers(self) -> dict[str, str]:
        """The headers that authenticate this service on another's internal endpoints."""
        return {"Authorization": f"Bearer {self.service_credential.get_secret_value()}"}

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.development


def prefixed(prefix: str) -> SettingsConfigDict:
    """Settings config for a service: its own prefix; shared variables keep their plain names."""
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", populate_by_name=True)
