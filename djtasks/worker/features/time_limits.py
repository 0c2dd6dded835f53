"""The time-limits feature: ``time_limit`` and ``soft_time_limit`` of each request (processes layer).

The limits are the call's (the message's timelimit header), else the task's, else the
worker's ``task_time_limit`` / ``task_soft_time_limit``. The pool enforces them; the
main process records a hard limit's kill (see ``settlement.failure_to_record``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from djtasks.conf import Settings
from djtasks.protocol import TaskMessage
from djtasks.worker.features.base import Feature
from djtasks.worker.pools.timelimits import TimeLimits as Limits
from djtasks.worker.settlement import first_set


class TimeLimits(Feature):
    """Decide each request's soft and hard time limits."""

    options = frozenset({"time_limit", "soft_time_limit"})

    def before_job(self, message: TaskMessage, task: Any, settings: Settings) -> Mapping[str, Any]:
        limits = Limits.checked(
            first_set(message.soft_time_limit, getattr(task, "soft_time_limit", None),
                      settings.task_soft_time_limit),
            first_set(message.time_limit, getattr(task, "time_limit", None),
                      settings.task_time_limit),
        )
        return {"time_limit": limits.hard, "soft_time_limit": limits.soft}
