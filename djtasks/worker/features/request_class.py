"""The request-class feature: a task's own ``Request`` subclass and its ``on_*`` hooks (processes layer)."""

from __future__ import annotations

from typing import Any

from djtasks.worker.features.base import Feature
from djtasks.worker.pools.base import Outcome
from djtasks.worker.settlement import Fate
from djtasks.worker.task_request import RequestHooks


class RequestClass(Feature):
    """Call ``on_success``/``on_failure``/``on_retry``/``on_timeout`` of the task's Request class."""

    options = frozenset({"Request"})

    def __init__(self, hooks: RequestHooks) -> None:
        self.hooks = hooks

    def after_complete(self, job: Any, outcome: Outcome, fate: Fate) -> None:
        self.hooks.completed(job, outcome)
