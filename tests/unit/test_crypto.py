import base64
import os

import pytest
from cryptography.exceptions import InvalidTag

from shared.crypto import FieldCipher, KeyRingError


def key() -> bytes:
    return os.urandom(32)


def test_round_trip_is_tagged_with_the_key_id():
    cipher = FieldCipher({"k1": key()}, "k1")
    sealed = cipher.encrypt(b"synthetic person", aad=b"row-1")
    assert sealed.startswith("k1:") and b"synthetic" not in base64.b64decode(sealed[3:])
    assert cipher.decrypt(sealed, aad=b"row-1") == b"synthetic person"


def test_a_value_moved_to_another_row_does_not_decrypt():
    cipher = FieldCipher({"k1": key()}, "k1")
    with pytest.raises(InvalidTag):
        cipher.decrypt(cipher.encrypt(b"x", aad=b"row-1"), aad=b"row-2")


def test_rotation_re_encrypts_under_the_new_key_while_the_old_still_decrypts():
    old, new = key(), key()
    before = FieldCipher({"k1": old}, "k1").encrypt(b"value", aad=b"r")
    ring = FieldCipher({"k1": old, "k2": new}, "k2")
    assert ring.decrypt(before, aad=b"r") == b"value"
    after = ring.rotate(before, aad=b"r")
    assert FieldCipher.key_id_of(after) == "k2"
    assert FieldCipher({"k2": new}, "k2").decrypt(after, aad=b"r") == b"value"


def test_configuration_errors_are_specific():
    with pytest.raises(KeyRingError, match="not in the key ring"):
        FieldCipher({"k1": key()}, "k2")
    with pytest.raises(KeyRingError, match="32 bytes"):
        FieldCipher({"k1": b"short"}, "k1")
    with pytest.raises(KeyRingError, match="no encryption keys"):
        FieldCipher.from_config("", "")
    spec = "a:" + base64.b64encode(key()).decode() + ",b:" + base64.b64encode(key()).decode()
    assert FieldCipher.from_config(spec, "b").active_key_id == "b"
