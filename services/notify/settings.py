from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class NotifySettings(ServiceSettings):
    service_name: ClassVar[str] = "notify"
    model_config = prefixed("NOTIFY_")

    port: int = 8004
    intake_url: str = "http://127.0.0.1:8001"
    directory_url: str = "http://127.0.0.1:8003"
    # How long a provider's API key stays trusted after the directory confirmed it.
    provider_key_cache_seconds: float = 60.0
    # Response deadlines by risk band, in hours.
    deadline_hours_high: float = 4.0
    deadline_hours_medium: float = 48.0
    deadline_hours_standard: float = 120.0
