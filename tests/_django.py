"""
Django settings for the tests that serve Django apps (configured once per process).
"""

from __future__ import annotations

import django

from django.conf import settings


def configure_django() -> None:
    """Configure Django for the tests (no apps, no logging config of its own) if not yet done."""
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="obslog-tests",
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            INSTALLED_APPS=[],
            LOGGING_CONFIG=None,
            USE_TZ=True,
        )
        django.setup()
