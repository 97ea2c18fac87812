"""Deliveries to systems outside Pathways (provider webhooks, FHIR Subscription notifications): the
retry schedule and the endpoint rule. The state of the work (what is due, how often it was tried)
lives in the database, never in the loop (``shared.background.PeriodicWorker``), so a restarted
process simply picks up what is due.
"""

from __future__ import annotations

import random
from datetime import timedelta


def retry_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter before try ``attempt + 1`` (``attempt`` failed tries so far).

    Full jitter (a random delay up to the exponential bound) spreads a burst of failures so that an
    endpoint coming back is not hit by every retry at the same instant.
    """
    bound = min(cap, base * (2 ** max(attempt - 1, 0)))
    return timedelta(seconds=(rng or random).uniform(bound / 2, bound))


def endpoint_refusal(url: str, *, development: bool) -> str | None:
    """Why Pathways will not send to this endpoint, or ``None`` when it may.

    Outside development only HTTPS is allowed: a notification tells a receiver that something about a
    survivor's case changed, and that fact alone must not cross a network in clear text.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "https":
        return None
    if scheme == "http" and development:
        return None
    return "endpoint must use HTTPS" if scheme == "http" else "endpoint must be an HTTPS URL"
