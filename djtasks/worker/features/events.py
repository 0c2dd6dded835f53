"""The events feature: "received", task events and the task_received signal (processes layer)."""

from __future__ import annotations

import logging
from typing import Any

from djtasks import signals, states
from djtasks.task import is_sensitive
from djtasks.worker.events import TaskEvents
from djtasks.worker.features.base import Feature
from djtasks.worker.pools.base import Outcome
from djtasks.worker.settlement import Fate, failure_to_record

logger = logging.getLogger("djtasks.worker")


class Events(Feature):
    """Log and announce each received message; send Celery's task events as requests run and end."""

    def __init__(self, tasks: Any, events: TaskEvents, sender: Any) -> None:
        self.tasks = tasks
        self.events = events
        self.sender = sender  # the task_received signal's sender: the consumer, as in Celery

    def before_reserve(self, request: Any, message: Any) -> bool:
        logger.info("Task %s received", request.label)
        self.events.received(request, sensitive=is_sensitive(self.tasks.get(request.message.task)))
        signals.task_received.send_robust(sender=self.sender, request=request)
        return True

    def on_running(self, request: Any, message: Any) -> None:
        self.events.started(request)

    def after_complete(self, request: Any, outcome: Outcome, fate: Fate) -> None:
        ended = how_it_ended(outcome, fate)
        if ended is not None:
            self.events.finished(request, *ended)


def how_it_ended(outcome: Outcome, fate: Fate) -> tuple[str, float | None, str, str, bool] | None:
    """Return state, runtime, summary, traceback and requeue of a request; None: it runs again.

    A member that could not record the task ended it in FAILURE (recorded by the main
    process), unless its message went back to the queue: then it has not ended.
    """
    error = failure_to_record(outcome)
    if error is not None:
        return None if fate is Fate.REQUEUE else (states.FAILURE, None, repr(error), "", False)
    report = outcome.value
    return report.state, report.runtime, report.summary, report.traceback, report.requeue
