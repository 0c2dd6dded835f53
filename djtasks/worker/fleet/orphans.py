"""LostInSibling: an acks_late message back from a child that died running it (processes layer).

In a fleet the broker, not the parent, holds each child's unacknowledged messages: when a
child dies, its running acks_late message goes back to the queue and a sibling receives it.
The pool-fed worker would have settled that message as Celery does (run again only under
``reject_on_worker_lost``; after a hard time limit, acknowledged unless
``task_acks_on_failure_or_timeout`` is off), and the parent records the failure. This
feature makes the sibling do what that worker would have done with the message.

It knows the run died because the dead child's slot still names the task (the parent does
not give a dead child's slot to a new child for ``TOMBSTONE_SECONDS``), or, later (a
django:// lease runs out after minutes), because the stored result is the failure the
parent recorded for a lost process. Only redelivered acks_late messages are looked at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from djtasks import states
from djtasks.backends.base import ResultBackend
from djtasks.worker.features import Feature
from djtasks.worker.fleet.slots import LostRequest, RunningSlots
from djtasks.worker.pools.base import Outcome, WorkerLost
from djtasks.worker.pools.timelimits import Timeout
from djtasks.worker.settlement import Fate, late_fate, settle_message

logger = logging.getLogger("djtasks.worker")

#: The failures the parent records for a run its child did not finish.
LOST_RUN_ERRORS = frozenset({"WorkerLostError", "TimeLimitExceeded"})


class LostInSibling(Feature):
    """Settle a redelivered acks_late message whose run died with another child of the fleet."""

    def __init__(self, slots: RunningSlots, index: int, backend: ResultBackend) -> None:
        self.slots = slots
        self.index = index
        self.backend = backend

    def before_reserve(self, request: Any, message: Any) -> bool:
        if not request.acks_late or not (message.delivery_info or {}).get("redelivered"):
            return True
        outcome = self._lost_run(request.message.id)
        if outcome is None:
            return True
        fate = late_fate(request, outcome)
        if fate is Fate.REQUEUE:
            return True  # reject_on_worker_lost, or no ack after a timeout: it runs again
        settle_message(message, fate)
        logger.warning("Task %s: back from a process that died running it; settled (%s), "
                       "not run again", request.label, fate.value)
        return False

    def _lost_run(self, task_id: str) -> Outcome | None:
        # In a sibling's slot: it died with the task (a live one cannot run a task that the
        # broker handed out again). Else the parent's recorded failure, if it is there yet.
        for index in range(self.slots.count):
            if index == self.index or not self.slots.busy(index):
                continue
            running = self.slots.read(index)
            if running is None or isinstance(running.request, LostRequest):
                continue
            if running.request.message.id == task_id:
                hard = running.hard_deadline
                timeout = None if hard is None or time.time() < hard else \
                    Timeout(soft=False, limit=hard - running.started)
                return Outcome(lost=WorkerLost(cause="its process died"), timeout=timeout)
        meta = self.backend.get_meta(task_id)
        if meta.status == states.FAILURE and isinstance(meta.result, dict) \
                and meta.result.get("exc_type") in LOST_RUN_ERRORS:
            timeout = Timeout(soft=False, limit=0.0) \
                if meta.result.get("exc_type") == "TimeLimitExceeded" else None
            return Outcome(lost=WorkerLost(cause="its process died"), timeout=timeout)
        return None


#: Brokers that keep a consumer's unacknowledged messages where any client can settle them
#: by delivery tag (Redis: its unacked hash; django://: the rows). RabbitMQ takes a dead
#: connection's messages back itself, and the sibling that receives one settles it above.
SETTLED_BY_TAG = frozenset({"redis", "django"})


class ByTag:
    """The unacknowledged message of a dead child, settled from the parent's channel.

    Without it, Redis and django:// would give the message back only after the visibility
    timeout; with it, the parent acknowledges, rejects or requeues it as soon as it has
    recorded the loss, as it does in the pool it feeds itself.
    """

    acknowledged = False

    def __init__(self, channel: Callable[[], Any], delivery_tag: Any) -> None:
        self.channel = channel
        self.delivery_tag = delivery_tag

    def ack(self) -> None:
        self.channel().qos.ack(self.delivery_tag)
        self.acknowledged = True

    def reject(self, requeue: bool = False) -> None:
        self.channel().qos.reject(self.delivery_tag, requeue=requeue)
        self.acknowledged = True
