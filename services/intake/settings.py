from typing import ClassVar

from pydantic import SecretStr

from shared.settings import ServiceSettings, prefixed


class IntakeSettings(ServiceSettings):
    service_name: ClassVar[str] = "intake"
    model_config = prefixed("INTAKE_")

    port: int = 8001
    # Key ring for identifying data: "kid1:base64key,kid2:base64key"; new values use the active key.
    encryption_keys: SecretStr = SecretStr("")
    active_key_id: str = ""
    # Largest request body accepted, in bytes.
    max_body_bytes: int = 1_000_000
    # Register the sample EHR client (development and demos only).
    seed_sample_client: bool = False
    # DASH thresholds: this many "yes" answers or more makes the band.
    dash_high_threshold: int = 14
    dash_medium_threshold: int = 10
