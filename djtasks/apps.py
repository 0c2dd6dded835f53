"""Django app config: registers the django:// transport and discovers tasks.py (edge layer)."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed
from django.utils.module_loading import autodiscover_modules
from kombu.transport import TRANSPORT_ALIASES

from djtasks.application import reset_default_app


class DjtasksConfig(AppConfig):
    name = "djtasks"
    verbose_name = "Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # kombu resolves "django://" through this table, in any process that loaded Django.
        TRANSPORT_ALIASES["django"] = "djtasks.transport.django:Transport"
        from djtasks import checks  # noqa: F401 - registers the system checks
        from djtasks.worker import housekeeping  # noqa: F401 - registers djtasks.backend_cleanup

        setting_changed.connect(_reset_default_app_on_change, dispatch_uid="djtasks-settings")
        autodiscover_modules("tasks")


def _reset_default_app_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "DJTASKS":
        reset_default_app()
