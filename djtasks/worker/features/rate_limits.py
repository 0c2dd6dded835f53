"""The rate-limits feature: the task option ``rate_limit``, per worker (processes layer)."""

from __future__ import annotations

from typing import Any

from djtasks.worker.features.base import Feature
from djtasks.worker.rate_limits import RateLimits as Gate


class RateLimits(Feature):
    """Hold a request back while its task has no token left (the consumer releases it later)."""

    options = frozenset({"rate_limit"})

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def before_start(self, request: Any, message: Any) -> bool:
        return not self.gate.hold(request, message)
