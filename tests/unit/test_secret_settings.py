"""Secrets come only from the environment or mounted files, as ``SecretStr``, so a settings object that
is printed, logged or put in an error shows ``**********`` instead of the secret."""

from __future__ import annotations

import re

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from services.directory.settings import DirectorySettings
from services.intake.closed_loop import ClosedLoopSettings
from services.intake.settings import IntakeSettings
from services.notify.settings import NotifySettings
from services.router.settings import RouterSettings

SECRET_NAME = re.compile(r"(key|token|secret|password|credential)", re.IGNORECASE)
# What such a name may be without being a secret: an id, a digest, a duration.
NOT_A_SECRET = re.compile(r"(_id$|_hash$|_seconds$|_hours$|_file$|_dir$|_token_url$|_cache_size$)")
SETTINGS: tuple[type[BaseSettings], ...] = (IntakeSettings, RouterSettings, DirectorySettings, NotifySettings,
                                            ClosedLoopSettings)


def test_every_secret_setting_is_a_secret_str():
    plain = [f"{cls.__name__}.{name}: {field.annotation}" for cls in SETTINGS
             for name, field in cls.model_fields.items()
             if SECRET_NAME.search(name) and not NOT_A_SECRET.search(name) and field.annotation is not SecretStr]
    assert plain == []


def test_a_printed_settings_object_does_not_show_its_secrets():
    settings = IntakeSettings(service_credential="svc-secret-token-value", encryption_keys="k1:c2VjcmV0LWtleS1tYXRlcmlhbA==")
    for shown in (repr(settings), str(settings), str(settings.model_dump())):
        assert "svc-secret-token-value" not in shown and "c2VjcmV0LWtleS1tYXRlcmlhbA" not in shown
