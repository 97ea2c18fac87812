from typing import ClassVar

from pydantic import Field

from shared.events import RiskBand
from shared.settings import ServiceSettings, prefixed


class NotifySettings(ServiceSettings):
    service_name: ClassVar[str] = "notify"
    model_config = prefixed("NOTIFY_")

    port: int = 8004
    # Where providers reach this API: the links in webhook payloads point here.
    public_url: str = "http://127.0.0.1:8004"
    intake_url: str = "http://127.0.0.1:8001"
    directory_url: str = "http://127.0.0.1:8003"
    # The router: the ops console reads its decisions, the reports its gap analysis.
    router_url: str = "http://127.0.0.1:8002"
    # How long a provider's API key stays trusted after the directory confirmed it. 0 (the default): the
    # directory is asked on every request, so a revoked key stops at the next call on every replica
    # (issue 13). Above 0, the directory's change broadcast evicts early, but at most once.
    provider_key_cache_seconds: float = 0.0
    # Keys the directory does not know are remembered (bounded) so that guessing costs no internal call.
    unknown_key_cache_seconds: float = 30.0
    unknown_key_cache_size: int = 10_000
    # Response deadlines by risk band, in hours (high risk: hours, not days).
    deadline_hours_high: float = 4.0
    deadline_hours_medium: float = 48.0
    deadline_hours_standard: float = 120.0
    # How often the deadline timer looks for overdue offers (deadlines themselves live in the database).
    sla_check_seconds: float = 30.0
    # Webhooks: retried with exponential backoff and jitter for this long, then the endpoint is disabled.
    webhook_retry_hours: float = 24.0
    webhook_backoff_base_seconds: float = 10.0
    webhook_backoff_cap_seconds: float = 3600.0
    webhook_timeout_seconds: float = 10.0
    webhook_poll_seconds: float = 5.0
    # Deliveries in flight at once per notify process (each leased, by the transaction that made its offer or
    # by a dispatcher step, then POSTed and its outcome written): none is leased without a free slot.
    webhook_concurrency: int = Field(default=8, ge=1, le=256)
    # How long a provider's delivery settings (channel, URL, secrets) are reused before asking the directory.
    delivery_cache_seconds: float = 60.0
    page_size_max: int = 100

    def deadline_hours(self) -> dict[RiskBand, float]:
        return {
            RiskBand.high: self.deadline_hours_high,
            RiskBand.medium: self.deadline_hours_medium,
            RiskBand.standard: self.deadline_hours_standard,
        }
