"""The ETA feature: a message due later waits, parked or held, before it is reserved (processes layer)."""

from __future__ import annotations

from typing import Any

from djtasks.worker.eta import EtaGate
from djtasks.worker.features.base import Feature


class Eta(Feature):
    """Keep messages whose ``eta`` is still to come in the EtaGate (the consumer reserves them when due)."""

    def __init__(self, gate: EtaGate) -> None:
        self.gate = gate

    def before_reserve(self, request: Any, message: Any) -> bool:
        return not self.gate.defer(request, message)
