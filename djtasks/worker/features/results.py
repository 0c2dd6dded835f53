"""The results feature: what the main process records and logs of each request's end (processes layer).

The member that ran a task stores its result (see ``worker/executor.py``). The main process
stores only what a member could not: the FAILURE of one that was killed or lost, or that
could not run or record the task, so that no caller waits for ever.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import DatabaseError

from djtasks import states
from djtasks.application import App
from djtasks.backends.base import exception_to_dict
from djtasks.conf import Settings
from djtasks.protocol import TaskMessage
from djtasks.utils.log import loggable
from djtasks.worker.executor import Report
from djtasks.worker.features.base import Feature
from djtasks.worker.pools.base import Outcome
from djtasks.worker.settlement import Fate, failure_to_record, first_set
from djtasks.worker.workflow import Workflow

logger = logging.getLogger("djtasks.worker")


class Results(Feature):
    """Decide whether a request stores its result; record and log how each request ended."""

    options = frozenset({"ignore_result", "track_started", "store_errors_even_if_ignored",
                         "throws", "sensitive"})

    def __init__(self, app: App, workflow: Workflow) -> None:
        self.app = app
        self.workflow = workflow

    def before_job(self, message: TaskMessage, task: Any, settings: Settings) -> Mapping[str, Any]:
        return {
            # None on the wire (Celery's send_task) means: as the task says.
            "ignore_result": bool(first_set(message.ignore_result, task.ignore_result,
                                            settings.task_ignore_result)),
            "track_started": bool(first_set(task.track_started, settings.task_track_started)),
        }

    def after_complete(self, request: Any, outcome: Outcome, fate: Fate) -> None:
        # A member that was killed, was lost, or could not run or record the task (its
        # database went away, say): record the failure from here, so that no caller
        # waits for a result; unless the message goes back to its queue to run again.
        error = failure_to_record(outcome)
        if error is None:
            log_report(request.label, outcome.value)
        elif fate is Fate.REQUEUE:
            logger.warning("Task %s: %s; requeued, it will run again", request.label, error)
        else:
            logger.error("Task %s raised unexpected: %s", request.label, loggable(repr(error), 1000))
            # It died mid-task: its errbacks, chain and chord wait for it.
            self.record_failure(request, error, fail_canvas=outcome.lost is not None)

    def record_failure(self, request: Any, error: Exception, fail_canvas: bool) -> None:
        """Store FAILURE for ``request`` from the main process; with ``fail_canvas``, fail its canvas."""
        try:
            self.app.backend.store(request.message.id, states.FAILURE, exception_to_dict(error))
            if fail_canvas:
                self.workflow.on_failure(request.message, request, error, "")
                self.workflow.count_in_chord(request.message, failed=True)
        except DatabaseError:
            raise  # recorded once the database answers (process_completions)
        except Exception:
            logger.exception("Could not store the failure of %s, or fail its canvas", request.label)


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
