from typing import ClassVar

from pydantic import Field, SecretStr, field_validator

from services.intake.domain import ReferralRules, RiskThresholds
from shared.reference import AbuseType
from shared.settings import ServiceSettings, prefixed


class IntakeSettings(ServiceSettings):
    service_name: ClassVar[str] = "intake"
    model_config = prefixed("INTAKE_")

    port: int = 8001
    # Key ring for identifying data: "kid1:base64key,kid2:base64key"; new values use the active key.
    encryption_keys: SecretStr = SecretStr("")
    active_key_id: str = ""
    # The directory holds the ops users; intake asks it who an ops credential belongs to.
    directory_url: str = "http://127.0.0.1:8003"
    # How long an EHR client's API key is trusted after it was looked up: a client revoked in the
    # database is refused at most this long afterwards, and a burst of requests does not look it up each time.
    client_cache_seconds: float = 10.0
    # OAuth2 client credentials with private_key_jwt (issue 13): the token endpoint's URL as clients
    # address it (every client assertion's ``aud``), how long an assertion may live, how long an access
    # token does, and how long a JWKS fetched from a client's URL is reused.
    oauth_token_url: str = "http://127.0.0.1:8001/oauth2/token"
    assertion_max_seconds: int = Field(default=300, ge=30, le=300)
    access_token_seconds: int = Field(default=300, ge=60, le=3600)
    jwks_cache_seconds: float = Field(default=300.0, ge=0)
    # Register the sample EHR client (development and demos only).
    seed_sample_client: bool = False
    # After consent is withdrawn, the identifying data is purged this many hours later (0: at the next
    # purge run). The wait lets a survivor who withdrew by mistake give consent again.
    withdrawal_purge_hours: float = Field(default=24.0, ge=0)
    # After a referral closes (its Task completed, rejected or cancelled), its identifying data is purged this
    # many days later; the non-identifying record (summary, Task, audit trail) stays for statistics.
    closed_purge_days: float = Field(default=90.0, ge=0)
    # How often due purges are looked for.
    purge_check_seconds: float = Field(default=300.0, gt=0)
    # DASH thresholds: this many "yes" answers or more makes the band.
    dash_high_threshold: int = 14
    dash_medium_threshold: int = 10
    # Per-area DASH thresholds agreed with the local MARAC, by postcode district or postcode area:
    # '{"LS": [12, 8], "LS7": [13, 9]}' is [high, medium]. The district wins over its area.
    dash_area_thresholds: dict[str, tuple[int, int]] = Field(default_factory=dict)
    # SNOMED CT concepts (e.g. from the NHS "Safeguarding issues" refset 999002381000000108) that a
    # safeguarding Flag may carry, mapped to Pathways abuse types: '{"<concept id>": "forced-marriage"}'.
    # Configured, not built in: the codes need clinical-safety sign-off for each deployment.
    safeguarding_snomed: dict[str, str] = Field(default_factory=dict)

    @field_validator("safeguarding_snomed")
    @classmethod
    def _known_abuse_types(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value.values()) - {a.value for a in AbuseType})
        if unknown:
            raise ValueError(f"unknown abuse types: {', '.join(unknown)}")
        return value

    @field_validator("dash_area_thresholds")
    @classmethod
    def _high_above_medium(cls, value: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        for area, (high, medium) in value.items():
            if not 0 < medium < high <= 24:
                raise ValueError(f"{area}: thresholds must satisfy 0 < medium < high <= 24")
        return value

    def referral_rules(self) -> ReferralRules:
        """The DASH thresholds (default and each area's own) and the SNOMED flag map, as parsing uses them."""
        return ReferralRules(
            thresholds=RiskThresholds(high=self.dash_high_threshold, medium=self.dash_medium_threshold),
            area_thresholds={area.upper(): RiskThresholds(high=h, medium=m)
                             for area, (h, m) in self.dash_area_thresholds.items()},
            snomed_flags=dict(self.safeguarding_snomed),
        )
