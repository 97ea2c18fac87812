"""Settings: one pydantic-settings object per service, each with its own environment prefix.

A few values are the same for every service and are read without a prefix, so that one variable
configures the whole system (``NATS_URL``, ``DATABASE_URL``, ``PATHWAYS_ENV``, ``PATHWAYS_SERVICE_TOKEN``).
In Kubernetes each service runs in its own pod with its own environment, so these can still differ
per service there.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(".data")


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
    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias=AliasChoices("NATS_URL", "nats_url"))
    database_url: str = Field(default="", validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    # Token that authenticates one Pathways service to another on internal HTTP calls.
    service_token: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("PATHWAYS_SERVICE_TOKEN", "service_token")
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
    # Where the SQLite databases live (``pathways up --data-dir`` sets it for every service).
    data_dir: Path = Field(default=DATA_DIR, validation_alias=AliasChoices("PATHWAYS_DATA_DIR", "data_dir"))

    def resolved_database_url(self) -> str:
        """The service's own database: SQLite under the data directory unless a URL is configured."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{self.data_dir / (self.service_name + '.db')}"

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.development


def prefixed(prefix: str) -> SettingsConfigDict:
    """Settings config for a service: its own prefix; shared variables keep their plain names."""
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", populate_by_name=True)
