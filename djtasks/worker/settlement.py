"""How a job's end is settled in the main process: limits, lost members, acks (processes layer).

The main process decides, when a message arrives, the execution options that it enforces
itself (time limits, what to do if the member dies); when the job is over, it decides
which failure it must record for a member that could not (a killed or lost one), and
what becomes of an ``acks_late`` message, as Celery's worker does:

================================  =========================================================
the job                           its acks_late message
================================  =========================================================
succeeded                         acknowledged
failed (the task raised)          acknowledged; rejected (not requeued) when
                                  ``task_acks_on_failure_or_timeout`` is False
ran past its hard time limit      acknowledged; requeued when the setting above is False
raised Reject(requeue=...)        rejected, or requeued
member died (kill -9, segfault)   requeued with ``reject_on_worker_lost``, else as a failure
================================  =========================================================

A requeued job records no FAILURE: it is going to run again.
"""

from __future__ import annotations

import enum
from typing import Any

from djtasks import states
from djtasks.conf import Settings
from djtasks.exceptions import DjtasksError, TimeLimitExceeded
from djtasks.protocol import TaskMessage
from djtasks.worker.pools.base import Outcome
from djtasks.worker.pools.timelimits import TimeLimits


class Fate(enum.Enum):
    """What becomes of an acks_late message once its job is over."""

    ACK = "ack"
    REJECT = "reject"  # dropped, or dead-lettered where the broker is set up for it
    REQUEUE = "requeue"


def execution_options(message: TaskMessage, task: Any, settings: Settings) -> dict[str, Any]:
    """Return the Job fields the main process enforces, each from the first that sets it.

    Time limits: the call's (the message's timelimit header), else the task's, else the
    worker's ``task_time_limit`` / ``task_soft_time_limit``. The flags: the task's, else
    the setting.
    """
    limits = TimeLimits.checked(
        _first(message.soft_time_limit, getattr(task, "soft_time_limit", None),
               settings.task_soft_time_limit),
        _first(message.time_limit, getattr(task, "time_limit", None), settings.task_time_limit),
    )
    return {
        "time_limit": limits.hard,
        "soft_time_limit": limits.soft,
        "reject_on_worker_lost": bool(_first(getattr(task, "reject_on_worker_lost", None),
                                             settings.task_reject_on_worker_lost)),
        "acks_on_failure_or_timeout": bool(_first(
            getattr(task, "acks_on_failure_or_timeout", None),
            settings.task_acks_on_failure_or_timeout)),
    }


def late_fate(job: Any, outcome: Outcome) -> Fate:
    """Return what to do with the acks_late message of ``job`` (see the module's table)."""
    state = getattr(outcome.value, "state", None)
    if state == states.REJECTED:  # raise Reject(reason, requeue=...)
        return Fate.REQUEUE if getattr(outcome.value, "requeue", False) else Fate.REJECT
    if outcome.timeout is not None and not outcome.timeout.soft:
        return Fate.ACK if job.acks_on_failure_or_timeout else Fate.REQUEUE
    if outcome.lost is not None and job.reject_on_worker_lost:
        return Fate.REQUEUE
    failed = outcome.lost is not None or outcome.error is not None or state == states.FAILURE
    return Fate.REJECT if failed and not job.acks_on_failure_or_timeout else Fate.ACK


def failure_to_record(outcome: Outcome) -> Exception | None:
    """Return the failure the main process records for ``outcome``, None if the member did.

    A member killed by its hard time limit: TimeLimitExceeded; otherwise lost:
    WorkerLostError; one that could not run or record the task: a DjtasksError.
    """
    if outcome.timeout is not None and not outcome.timeout.soft:
        return TimeLimitExceeded(f"{outcome.timeout.describe()}: {outcome.lost or 'killed'}")
    if outcome.lost is not None:
        return outcome.lost.as_error()
    if outcome.error is not None:
        return DjtasksError(f"the worker could not run or record the task: {outcome.error}")
    return None


def settle_message(message: Any, fate: Fate) -> None:
    """Acknowledge, reject or requeue a kombu message as ``fate`` says."""
    if fate is Fate.ACK:
        message.ack()
    else:
        message.reject(requeue=fate is Fate.REQUEUE)


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None
