"""The acks feature: when a message is acknowledged, and what a lost member means (processes layer).

Early (the default): acknowledged as the request goes to a pool member. A prefork request
that waits in the pool for a child (``backlog_per_child``) is acknowledged when a child
takes it, and goes back to its queue unacknowledged if none does before the worker stops,
as Celery's reserved requests do. Members inside the worker's process (threads, solo) have
the ack sent before the task runs (django:// batches acks: flushed then), so that a task
that kills the worker does not come back to kill it again. With ``acks_late``: once the
request is over, as ``settlement.late_fate`` decides; ``reject_on_worker_lost`` requeues
the message of a member that died instead of failing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from djtasks.conf import Settings
from djtasks.protocol import TaskMessage
from djtasks.worker.features.base import Feature
from djtasks.worker.pools.base import Pool
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

    def __init__(self, pool: Pool | None = None) -> None:
        self.pool = pool
        #: Ids of early-ack requests submitted while they wait for a member: acked by taken().
        self.deferred: set[str] = set()

    def before_start(self, request: Any, message: Any) -> bool:
        if not request.acks_late and not (self.pool is not None and self.pool.jobs_may_wait):
            self.acknowledge(message)
        return True

    def after_start(self, request: Any, message: Any) -> None:
        if request.acks_late or self.pool is None or not self.pool.jobs_may_wait:
            return
        if self.pool.waiting_for_member(request):
            self.deferred.add(request.message.id)  # taken() acknowledges it
        else:
            self.acknowledge(message)

    def taken(self, request: Any, message: Any) -> None:
        """A member took ``request`` after it waited (or it ended first): acknowledge it."""
        if request.message.id in self.deferred:
            self.deferred.discard(request.message.id)
            if message is not None:
                self.acknowledge(message)

    def forget(self, request: Any) -> None:
        """``request`` goes back to its queue unstarted: nothing to acknowledge."""
        self.deferred.discard(request.message.id)

    def acknowledge(self, message: Any) -> None:
        message.ack()
        if self.pool is not None and self.pool.in_process:
            flush = getattr(message.channel, "flush_acks", None)  # django:// batches acks
            if flush is not None:
                flush()
