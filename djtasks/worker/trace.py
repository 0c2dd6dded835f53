"""What a task's control-flow exceptions mean to the worker: Retry, Ignore, Reject (processes layer).

A task ends in one of three ways besides returning or failing:

- ``raise self.retry(...)``: the message was sent again already (same id, retries + 1);
  this run stores RETRY with the reason, calls ``on_retry`` and sends ``task_retry``.
- ``raise Ignore()``: nothing is stored; the message is acknowledged.
- ``raise Reject(reason, requeue=False)``: nothing is stored; an ``acks_late`` message is
  rejected (dead-lettered where the broker is set up for it) or, with ``requeue``, put
  back on its queue. An early-acknowledged message is gone already, as in Celery.

The functions here run in the pool member, beside the Executor; ``log_report`` runs in
the main process and says in the log how each execution ended.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from djtasks import states
from djtasks.backends.base import ExecutionInfo, exception_to_dict
from djtasks.exceptions import Ignore, Reject, Retry
from djtasks.task import Context, Task
from djtasks.utils import handlers
from djtasks.utils.handlers import ExceptionInfo

if TYPE_CHECKING:
    from djtasks.application import App
    from djtasks.worker.request import Job, Report

logger = logging.getLogger("djtasks.worker")

CONTROL_FLOW = (Retry, Ignore, Reject)


def settle_control_flow(app: App, job: Job, task: Task, context: Context,
                        exc: Retry | Ignore | Reject, info: ExecutionInfo) -> tuple[str, str, bool]:
    """Settle a run that raised Retry, Ignore or Reject; return its state, summary and requeue."""
    einfo = None
    if isinstance(exc, Retry):
        einfo = ExceptionInfo.from_exception(exc)
        reason = exc.exc if exc.exc is not None else exc
        # The retry is in the queue already: its result row says why, until it runs.
        app.backend.store(job.message.id, states.RETRY, exception_to_dict(reason),
                          traceback=einfo.traceback, info=info)
        handlers.retried(task, context, exc, einfo)
        state, summary, requeue = states.RETRY, str(exc), False
    elif isinstance(exc, Reject):
        state, summary, requeue = states.REJECTED, str(exc), exc.requeue
    else:
        state, summary, requeue = states.IGNORED, "ignored", False
    handlers.returned(task, context, state, exc, einfo)
    return state, summary, requeue


def log_report(label: str, report: Report) -> None:
    """Log how an execution ended, in the main process (Celery's wording)."""
    if report.state == states.SUCCESS:
        logger.info("Task %s succeeded in %.4fs: %s", label, report.runtime, report.summary)
    elif report.state == states.RETRY:
        logger.info("Task %s retry: %s", label, report.summary)
    elif report.state == states.IGNORED:
        logger.info("Task %s ignored", label)
    elif report.state == states.REJECTED:
        logger.warning("Task %s rejected: %s", label, report.summary)
    elif report.unstored:
        logger.error("Task %s returned in %.4fs, but its value could not be stored; FAILURE "
                     "stored: %s", label, report.runtime, report.summary)
    elif report.expected:
        # A ``throws`` exception: an expected outcome, not an error, and no traceback.
        logger.info("Task %s raised expected: %s", label, report.summary)
    else:
        logger.error("Task %s raised: %s (after %.4fs)", label, report.summary, report.runtime)
