"""The deliveries feature: the poison-message bound ``task_max_deliveries`` (processes layer)."""

from __future__ import annotations

from typing import Any

from djtasks.worker.deliveries import DeliveryLimit
from djtasks.worker.features.base import Feature


class Deliveries(Feature):
    """Dead-letter an acks_late message started too often instead of starting it again."""

    def __init__(self, limit: DeliveryLimit) -> None:
        self.limit = limit

    def before_start(self, request: Any, message: Any) -> bool:
        return self.limit.admit(request, message)
