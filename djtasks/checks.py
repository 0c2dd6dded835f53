"""System checks of the DJTASKS configuration (edge layer).

They run before ``runworker`` starts and with ``manage.py check``, so a mistake shows up as
a named error at start-up rather than as a failure in the middle of the night.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.checks import Error, Warning, register  # noqa: A004 - Django's name
from django.db import connections

from djtasks import protocol
from djtasks.application import backend_from_url, default_app
from djtasks.exceptions import ImproperlyConfigured


@register("djtasks")
def check_configuration(app_configs: Any = None, **kwargs: Any) -> list:
    """Check that DJTASKS loads and that what it names exists."""
    try:
        settings = default_app().settings
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="djtasks.E001")]
    errors: list = []
    try:
        protocol.accepted_content_types(settings.accept_content)
    except ImproperlyConfigured as exc:
        errors.append(Error(str(exc), id="djtasks.E002"))
    try:
        backend_from_url(settings.result_backend)
    except (ImproperlyConfigured, ValueError) as exc:
        errors.append(Error(str(exc), id="djtasks.E003"))
    errors += check_django_broker(settings.broker_url)
    errors += check_result_connections(settings.result_backend)
    return errors


def check_result_connections(result_backend: str) -> list:
    """A worker closes a CONN_MAX_AGE=0 connection after every task and opens one per task."""
    parts = urlsplit(result_backend)
    if (parts.scheme or result_backend) != "django-db":
        return []
    alias = parts.hostname or "default"
    if alias in connections.settings and connections.settings[alias].get("CONN_MAX_AGE", 0) == 0:
        return [Warning(
            f"result_backend {result_backend!r}: database {alias!r} has CONN_MAX_AGE = 0, so "
            "workers open a new database connection for every task",
            hint="set CONN_MAX_AGE (e.g. 60, or None) with CONN_HEALTH_CHECKS = True for that "
                 "database; measured with bench/, draining with results stored is about 3.5 "
                 "times faster",
            id="djtasks.W002",
        )]
    return []


def check_django_broker(url: str) -> list:
    """The django:// broker must name a configured database, best one that can take writers."""
    parts = urlsplit(url)
    if parts.scheme != "django":
        return []
    alias = parts.hostname or "default"
    if alias not in connections.settings:
        return [Error(f"broker_url {url!r}: no database alias {alias!r} in DATABASES",
                      id="djtasks.E004")]
    database = connections.settings[alias]
    mode = str(database.get("OPTIONS", {}).get("transaction_mode") or "").upper()
    if database["ENGINE"].endswith("sqlite3") and mode != "IMMEDIATE":
        # runworker and runbeat prepare their own connections (backends/sqlite.py); the
        # web processes that send tasks use DATABASES as written.
        return [Warning(
            f"broker_url {url!r} uses SQLite database {alias!r} with deferred transactions: a "
            "web request that sends a task while a worker writes can fail with 'database is "
            "locked'",
            hint="add OPTIONS={'transaction_mode': 'IMMEDIATE', 'timeout': 20} to that database "
                 "(runworker and runbeat already switch the file to WAL and use immediate "
                 "transactions on their own connections)",
            id="djtasks.W001",
        )]
    return []
