"""Webhook signatures as a provider's receiver sees them, verified with the Standard Webhooks library a
receiver would use: rotation, an old secret, a stale timestamp, a replayed or re-labelled message."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import timedelta
from uuid import UUID

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.notify.domain import WebhookEvent, webhook_payload
from services.notify.webhooks import webhook_headers
from shared.events import utcnow

OLD, NEW = (f"whsec_{base64.b64encode(secrets.token_bytes(24)).decode()}" for _ in range(2))


def delivery(signing: tuple[str, ...], *, at_offset: timedelta = timedelta(0)) -> tuple[str, dict[str, str]]:
    """One attempt of one delivery as notify sends it: the thin body and its headers."""
    at = utcnow() + at_offset
    payload = webhook_payload(WebhookEvent.offer_made, offer_id=UUID(int=7), base_url="https://notify.example", at=at)
    return payload, webhook_headers("msg_1", at, payload, signing)


def test_during_rotation_a_receiver_on_either_secret_accepts():
    payload, headers = delivery((OLD, NEW))
    for secret in (OLD, NEW):
        assert Webhook(secret).verify(payload, headers)["type"] == "offer.made"


def test_a_message_signed_only_with_the_old_secret_is_refused_by_a_receiver_that_rotated():
    payload, headers = delivery((OLD,))
    with pytest.raises(WebhookVerificationError, match="No matching signature found"):
        Webhook(NEW).verify(payload, headers)


@pytest.mark.parametrize(("offset", "words"), [(timedelta(minutes=-6), "too old"), (timedelta(minutes=6), "too new")])
def test_a_stale_or_future_timestamp_is_refused(offset, words):
    payload, headers = delivery((NEW,), at_offset=offset)
    with pytest.raises(WebhookVerificationError, match=f"Message timestamp {words}"):
        Webhook(NEW).verify(payload, headers)


def test_a_replayed_message_verifies_so_the_receiver_drops_it_by_its_id_which_cannot_be_relabelled():
    payload, headers = delivery((NEW,))
    # Replayed as captured (within the five-minute tolerance): the signature holds, so the receiver
    # recognises it by webhook-id, which notify keeps the same on every attempt of a delivery.
    assert Webhook(NEW).verify(payload, headers) == json.loads(payload)
    retry_payload, retry = delivery((NEW,), at_offset=timedelta(seconds=30))
    assert retry["webhook-id"] == headers["webhook-id"] and retry_payload != payload
    # Re-labelled with a fresh id to slip past that check, or with its body changed: refused.
    with pytest.raises(WebhookVerificationError, match="No matching signature found"):
        Webhook(NEW).verify(payload, {**headers, "webhook-id": "msg_2"})
    with pytest.raises(WebhookVerificationError, match="No matching signature found"):
        Webhook(NEW).verify(payload.replace("offer.made", "offer.withdrawn"), headers)
