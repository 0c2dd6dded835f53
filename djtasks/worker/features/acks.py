"""The acks feature: when a message is acknowledged, and what a lost member means (processes layer).

Early (the default): acknowledged as the request goes to the pool. With ``acks_late``: once
the request is over, as ``settlement.late_fate`` decides; ``reject_on_worker_lost`` requeues
the message of a member that died instead of failing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from djtasks.conf import Settings
from djtasks.protocol import TaskMessage
from djtasks.worker.features.base import Feature
from djtasks.worker.settlement import first_set


class Acks(Feature):
    """Decide each request's acknowledgement flags; acknowledge the early ones as they start."""

    options = frozenset({"acks_late", "reject_on_worker_lost"})

    def before_job(self, message: TaskMessage, task: Any, settings: Settings) -> Mapping[str, Any]:
        return {
            "acks_late": bool(first_set(getattr(task, "acks_late", None), settings.task_acks_late)),
            "reject_on_worker_lost": bool(first_set(getattr(task, "reject_on_worker_lost", None),
                                                    settings.task_reject_on_worker_lost)),
            "acks_on_failure_or_timeout": bool(first_set(
                getattr(task, "acks_on_failure_or_timeout", None),
                settings.task_acks_on_failure_or_timeout)),
        }

    def before_start(self, request: Any, message: Any) -> bool:
        if not request.acks_late:
            message.ack()
        return True
