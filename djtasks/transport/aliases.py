"""Which Django database a ``django://`` broker URL names (storage layer).

Kept apart from the transport so that code that only needs the answer (the app, beat, the
checks) does not load the transport and its drivers.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS

from djtasks.exceptions import ImproperlyConfigured


def broker_alias(broker_url: str) -> str | None:
    """Return the database alias a ``django://`` broker URL uses; None for another broker."""
    parts = urlsplit(broker_url)
    return database_alias(parts.hostname) if parts.scheme == "django" else None


def database_alias(hostname: str | None) -> str:
    """Return the Django database alias that the URL's host names (``default`` if none)."""
    if not hostname:
        return DEFAULT_DB_ALIAS
    # URL parsing lowercases host names, so an alias is matched without case.
    for alias in settings.DATABASES:
        if alias.lower() == hostname.lower():
            return alias
    raise ImproperlyConfigured(
        f"django://{hostname}: expected an alias of settings.DATABASES "
        f"({', '.join(settings.DATABASES)}), got {hostname!r}"
    )
