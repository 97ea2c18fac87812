"""Settings: one pydantic-settings object per service, each with its own environment prefix.

A few values are the same for every service and are read without a prefix, so that one variable
configures the whole system (``NATS_URL``, ``DATABASE_URL``, ``PATHWAYS_ENV``, ``PATHWAYS_SERVICE_CREDENTIALS``).
In Kubernetes each service runs in its own pod with its own environment, so these can still differ
per service there.

Secrets can also come from files, one per setting, named as its environment variable (a mounted
Kubernetes Secret): ``PATHWAYS_SECRETS_DIR`` names the directory. Or one file per variable, the Docker
and Compose convention: ``DATABASE_URL_FILE=/run/secrets/db`` reads ``DATABASE_URL`` from that file (for
string settings, secrets above all). A variable wins over its ``_FILE``, and both over the directory.
Secret settings are ``SecretStr``: printed or dumped, they show as ``**********``.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import AliasChoices, Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SecretsSettingsSource, SettingsConfigDict

if TYPE_CHECKING:
    from shared.bus import StreamLimits

DATA_DIR = Path(".data")
SECRETS_DIR_VARIABLE = "PATHWAYS_SECRETS_DIR"


class Environment(StrEnum):
    development = "development"
    production = "production"


class FileVariables(PydanticBaseSettingsSource):
    """``<VARIABLE>_FILE=/path``: a string setting read from that file (trailing newline dropped)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is done in __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        prefix = str(self.config.get("env_prefix") or "")
        for name, info in self.settings_cls.model_fields.items():
            if info.annotation not in (str, SecretStr):
                continue
            alias = info.validation_alias
            variable = alias.choices[0] if isinstance(alias, AliasChoices) else prefix + name
            path = os.environ.get(f"{str(variable).upper()}_FILE")
            if path:
                try:
                    values[name] = Path(path).read_text().rstrip("\r\n")
                except OSError as exc:
                    # Names the variable and the path, never anything read.
                    raise ValueError(f"{str(variable).upper()}_FILE: cannot read {path} ({type(exc).__name__})") from None
        return values


class ServiceSettings(BaseSettings):
    """What every service needs: its bus, its database, its credentials for internal calls."""

    service_name: ClassVar[str] = "service"
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    environment: Environment = Field(
        default=Environment.production, validation_alias=AliasChoices("PATHWAYS_ENV", "environment")
    )
    # One URL, or several separated by commas (the client fails over between them). Secret: it may carry
    # the service's NATS user and password (production does), so it is masked wherever settings are shown.
    nats_url: SecretStr = Field(default=SecretStr("nats://127.0.0.1:4222"),
                                validation_alias=AliasChoices("NATS_URL", "nats_url"))
    # CA certificate (a mounted file) for tls:// NATS URLs whose servers use a private CA.
    nats_ca_file: str = Field(default="", validation_alias=AliasChoices("NATS_CA_FILE", "nats_ca_file"))
    # Copies of each stream kept by a NATS cluster: 3 in production, so losing a node loses nothing.
    nats_stream_replicas: int = Field(
        default=1, ge=1, le=5, validation_alias=AliasChoices("NATS_STREAM_REPLICAS", "nats_stream_replicas")
    )
    # How long JetStream keeps events (case summaries) and dead letters, and how much (shared.bus.StreamLimits).
    nats_events_max_age_days: float = Field(
        default=14, gt=0, le=365, validation_alias=AliasChoices("NATS_EVENTS_MAX_AGE_DAYS", "nats_events_max_age_days"))
    nats_dead_letters_max_age_days: float = Field(
        default=30, gt=0, le=365,
        validation_alias=AliasChoices("NATS_DEAD_LETTERS_MAX_AGE_DAYS", "nats_dead_letters_max_age_days"))
    nats_stream_max_bytes: int = Field(
        default=1 << 30, ge=1 << 20, validation_alias=AliasChoices("NATS_STREAM_MAX_BYTES", "nats_stream_max_bytes"))
    # Secret: a PostgreSQL URL carries the password.
    database_url: SecretStr = Field(default=SecretStr(""),
                                    validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    # Internal HTTP calls between the services (issue 13): each service presents its OWN credential, and
    # accepts the services named in ``service_credentials`` ("name:sha256-hex,…", several per name while a
    # credential is rotated), so a callee knows which service called and holds nothing it could call as.
    service_credential: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("PATHWAYS_SERVICE_CREDENTIAL", "service_credential")
    )
    service_credentials: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("PATHWAYS_SERVICE_CREDENTIALS", "service_credentials")
    )
    # The audit trail's HMAC keys, "kid:base64key,…" (at least 32 random bytes each; ``pathways audit
    # keygen``): every record's hash is keyed, so one who can write the database but does not hold the key
    # cannot re-compute a chain they edited. Several keys for rotation: new records use the active one,
    # ``verify`` checks older ones with theirs. Empty: plain SHA-256 (development; ``verify`` still
    # detects edits made without re-hashing).
    audit_keys: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("PATHWAYS_AUDIT_KEYS", "audit_keys")
    )
    audit_active_key_id: str = Field(
        default="", validation_alias=AliasChoices("PATHWAYS_AUDIT_ACTIVE_KEY_ID", "audit_active_key_id")
    )
    # How often the sealer looks for unsealed audit records besides being woken after each audited commit.
    audit_seal_seconds: float = Field(
        default=5.0, gt=0, validation_alias=AliasChoices("PATHWAYS_AUDIT_SEAL_SECONDS", "audit_seal_seconds")
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
    # Abuse resistance (``shared.protection``): the largest request body in bytes (413 past it; per
    # service, e.g. ``DIRECTORY_MAX_BODY_BYTES``), and rate limits per caller (429 past them).
    max_body_bytes: int = Field(default=1_000_000, ge=0)
    # Where rate-limit counters live: in each process by default; with several replicas, a store they
    # share, as a ``limits`` storage URI (``async+redis://redis:6379/0``).
    rate_limit_storage: str = Field(
        default="async+memory://", validation_alias=AliasChoices("PATHWAYS_RATE_LIMIT_STORAGE", "rate_limit_storage")
    )
    rate_limit_strategy: str = Field(
        default="fixed-window", validation_alias=AliasChoices("PATHWAYS_RATE_LIMIT_STRATEGY", "rate_limit_strategy")
    )
    # Per kind of caller, over the defaults (``shared.protection.DEFAULT_RATE_LIMITS``), in ``limits``
    # notation: '{"ehr-client": "50/second;2000/minute", "anonymous": "10/second"}'. "" turns a kind off.
    rate_limits: dict[str, str] = Field(
        default_factory=dict, validation_alias=AliasChoices("PATHWAYS_RATE_LIMITS", "rate_limits")
    )
    # Networks outbound deliveries (webhooks, FHIR Subscriptions) may reach although they are not public,
    # comma-separated CIDRs (``shared.egress``); development also allows loopback.
    egress_allowed_networks: str = Field(
        default="", validation_alias=AliasChoices("PATHWAYS_EGRESS_ALLOWED_NETWORKS", "egress_allowed_networks")
    )
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
        return init_settings, env_settings, FileVariables(settings_cls), dotenv_settings, file_secret_settings

    def resolved_database_url(self) -> str:
        """The service's own database: SQLite under the data directory unless a URL is configured."""
        if self.database_url.get_secret_value():
            return self.database_url.get_secret_value()
        private_directory(self.data_dir)
        return f"sqlite+aiosqlite:///{self.data_dir / (self.service_name + '.db')}"

    def service_headers(self) -> dict[str, str]:
        """The headers that authenticate this service on another's internal endpoints."""
        return {"Authorization": f"Bearer {self.service_credential.get_secret_value()}"}

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.development

    def stream_limits(self) -> StreamLimits:
        from shared.bus import DAY, StreamLimits

        return StreamLimits(events_max_age=self.nats_events_max_age_days * DAY,
                            dead_letters_max_age=self.nats_dead_letters_max_age_days * DAY,
                            max_bytes=self.nats_stream_max_bytes)


def private_directory(path: Path) -> None:
    """Create ``path`` (and its parents) readable by its owner only (0700); an existing one is narrowed to
    0700: it holds the databases, whose identifying data is encrypted but whose case records are not."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        path.chmod(0o700)


def prefixed(prefix: str) -> SettingsConfigDict:
    """Settings config for a service: its own prefix; shared variables keep their plain names."""
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", populate_by_name=True)
