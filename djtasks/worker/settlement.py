"""How a job's end is settled in the main process: limits, lost members, acks (processes layer).

The features decide, when a message arrives, the execution options the main process
enforces itself (time limits, what to do if the member dies); when the job is over, it decides
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
from djtasks.exceptions import DjtasksError, TimeLimitExceeded
from djtasks.worker.pools.base import Outcome


class Fate(enum.Enum):
    """What becomes of an acks_late message once its job is over."""

    ACK = "ack"
    REJECT = "reject"  # dropped, or dead-lettered where the broker is set up for it
    REQUEUE = "requeue"


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


def first_set(*values: Any) -> Any:
    """Return the first of ``values`` that is not None (a call's, a task's, a setting)."""
    for value in values:
        if value is not None:
            return value
    return None
