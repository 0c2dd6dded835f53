"""The stats feature: the counters the heartbeat and ``inspect stats`` report (processes layer)."""

from __future__ import annotations

from typing import Any

from djtasks import states
from djtasks.worker.features.base import Feature
from djtasks.worker.features.events import how_it_ended
from djtasks.worker.heartbeat import WorkerStats
from djtasks.worker.pools.base import Outcome
from djtasks.worker.settlement import Fate


class Stats(Feature):
    """Count the requests started per task, and the finished and failed ones."""

    def __init__(self, stats: WorkerStats) -> None:
        self.stats = stats

    def on_running(self, request: Any, message: Any) -> None:
        self.stats.totals[request.message.task] += 1

    def after_complete(self, request: Any, outcome: Outcome, fate: Fate) -> None:
        ended = how_it_ended(outcome, fate)
        if ended is None:
            return
        self.stats.processed += 1
        if ended[0] == states.FAILURE:
            self.stats.failed += 1
