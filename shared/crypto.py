"""Field encryption for identifying data: AES-256-GCM, each value tagged with the id of its key.

A value is stored as ``<key id>:<base64(nonce || ciphertext+tag)>``. The key ring can hold several
keys: new values use the active one, old values still decrypt with theirs, and ``rotate`` re-encrypts
a value under the active key. The associated data binds a ciphertext to its row, so a value copied
onto another record does not decrypt.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class KeyRingError(ValueError):
    pass


class FieldCipher:
    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise KeyRingError(f"active key id '{active_key_id}' is not in the key ring")
        for key_id, key in keys.items():
            if ":" in key_id or not key_id:
                raise KeyRingError("key ids must be non-empty and contain no ':'")
            if len(key) != 32:
                raise KeyRingError(f"key '{key_id}' must be 32 bytes (AES-256)")
        self._keys = {k: AESGCM(v) for k, v in keys.items()}
        self.active_key_id = active_key_id

    @classmethod
    def from_config(cls, spec: str, active_key_id: str) -> FieldCipher:
        """Parse ``"kid1:base64key,kid2:base64key"`` (the form the settings hold)."""
        keys: dict[str, bytes] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key_id, _, encoded = item.partition(":")
            try:
                keys[key_id] = base64.b64decode(encoded, validate=True)
            except ValueError as exc:
                raise KeyRingError(f"key '{key_id}' is not valid base64") from exc
        if not keys:
            raise KeyRingError("no encryption keys configured")
        return cls(keys, active_key_id or next(iter(keys)))

    @staticmethod
    def new_key() -> str:
        return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self.active_key_id].encrypt(nonce, plaintext, aad)
        return f"{self.active_key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, value: str, *, aad: bytes) -> bytes:
        key_id, _, encoded = value.partition(":")
        if key_id not in self._keys:
            raise KeyRingError(f"value was encrypted under key '{key_id}', which is not in the key ring")
        raw = base64.b64decode(encoded)
        return self._keys[key_id].decrypt(raw[:12], raw[12:], aad)

    @staticmethod
    def key_id_of(value: str) -> str:
        return value.partition(":")[0]

    def rotate(self, value: str, *, aad: bytes) -> str:
        """Re-encrypt under the active key (unchanged if it already is)."""
        if self.key_id_of(value) == self.active_key_id:
            return value
        return self.encrypt(self.decrypt(value, aad=aad), aad=aad)
