"""Tasks, handlers, a Request class and signal receivers of the execution tests (issue 4).

Signals fire in the worker (and handlers run there), so what they see is written, one JSON
line per event, to the file named by ``DJTASKS_TEST_EVENTS`` when it is set; the test
reads it back. Imported by tests.testapp.tasks, so every worker registers these.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from djtasks import signals, task
from djtasks.exceptions import Ignore, Reject
from djtasks.task import Request, Task
from djtasks.utils.log import get_task_logger

logger = get_task_logger(__name__)


class FlakyError(Exception):
    """What the retrying tasks raise until their attempt comes."""


def note(event: str, **fields: object) -> None:
    """Append one event to the DJTASKS_TEST_EVENTS file (nothing when it is not set)."""
    path = os.environ.get("DJTASKS_TEST_EVENTS")
    if path:
        line = json.dumps({"event": event, "pid": os.getpid(), **fields}, default=repr)
        with Path(path).open("a") as fh:
            fh.write(line + "\n")


def attempt(path: str) -> int:
    """Count one more attempt in the file at ``path``; return its number (1 for the first)."""
    with Path(path).open("a") as fh:
        fh.write("x")
    return len(Path(path).read_text())


# -- the request -------------------------------------------------------------------------------
REQUEST_FIELDS = ("id", "task", "group", "chord", "correlation_id", "args", "kwargs", "origin",
                  "retries", "is_eager", "eta", "expires", "hostname", "delivery_info",
                  "reply_to", "called_directly", "timelimit", "callbacks", "errbacks", "utc",
                  "headers", "root_id", "parent_id", "chain")


@task(bind=True)
def request_fields(self, *args, **kwargs):
    """Return every field of self.request, JSON-ready."""
    return json.loads(json.dumps({name: getattr(self.request, name) for name in REQUEST_FIELDS},
                                 default=repr))


# -- retries -------------------------------------------------------------------------------------
@task(bind=True, max_retries=5)
def flaky(self, path, succeed_on=3, countdown=1):
    """Retry (with a reason) until attempt ``succeed_on``; return the retries it took."""
    number = attempt(path)
    if number < succeed_on:
        raise self.retry(exc=FlakyError(f"attempt {number}"), countdown=countdown)
    return self.request.retries


@task(bind=True, autoretry_for=(FlakyError,), retry_backoff=1, retry_backoff_max=1,
      retry_jitter=True, max_retries=4)
def autoretried(self, path, succeed_on=3):
    """Raise FlakyError until attempt ``succeed_on``: autoretry_for retries it, with backoff."""
    number = attempt(path)
    if number < succeed_on:
        raise FlakyError(f"attempt {number}")
    return self.request.retries


@task(bind=True, max_retries=2, default_retry_delay=0)
def gives_up(self, path):
    """Always retry with a reason: past max_retries the reason itself is raised."""
    number = attempt(path)
    raise self.retry(exc=FlakyError(f"attempt {number}"))


@task(bind=True, max_retries=0)
def gives_up_without_reason(self):
    raise self.retry()


# -- Reject, Ignore, throws --------------------------------------------------------------------
@task(acks_late=True)
def reject_once(path):
    """Reject (back to the queue) the first time, succeed the second."""
    if attempt(path) == 1:
        raise Reject("not yet", requeue=True)
    return "second"


@task(acks_late=True)
def reject_for_good(path):
    attempt(path)
    raise Reject("never", requeue=False)


@task(bind=True)
def ignored(self):
    """Store a state of its own, then end without the worker storing anything."""
    self.update_state(state="HANDLED", meta={"by": "the task"})
    raise Ignore()


@task(throws=(FlakyError,))
def expected_failure():
    raise FlakyError("expected")


# -- progress ----------------------------------------------------------------------------------
@task(bind=True)
def progress(self, steps, pause=0.3):
    for step in range(steps):
        self.update_state(state="PROGRESS", meta={"current": step, "total": steps})
        time.sleep(pause)
    return steps


# -- handlers and the Request class ------------------------------------------------------------
class RecordingTask(Task):
    """A base class whose handlers note what they were called with."""

    def on_success(self, retval, task_id, args, kwargs):
        note("on_success", task_id=task_id, retval=retval, args=list(args))

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        note("on_failure", task_id=task_id, exc=repr(exc), traceback="FlakyError" in str(einfo))

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        note("on_retry", task_id=task_id, exc=repr(exc))

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        note("after_return", task_id=task_id, status=status)


class RecordingRequest(Request):
    """A Request class whose hooks note what they saw, in the worker's main process."""

    def on_success(self, failed__retval__runtime, **kwargs):
        note("request.on_success", task_id=self.id, name=self.name)

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        note("request.on_failure", task_id=self.id, exc=repr(exc_info.exception))

    def on_timeout(self, soft, timeout):
        note("request.on_timeout", task_id=self.id, soft=soft, timeout=timeout)


@task(bind=True, base=RecordingTask, Request=RecordingRequest, max_retries=3)
def handled(self, path, outcome):
    """End as ``outcome`` says: "success", "failure", or "retry" (once, then success)."""
    number = attempt(path)
    if outcome == "failure":
        raise FlakyError("failed on purpose")
    if outcome == "retry" and number == 1:
        raise self.retry(exc=FlakyError("once more"), countdown=0)
    return number


@task(Request="tests.testapp.execution.RecordingRequest", soft_time_limit=1)
def request_by_path(seconds):
    time.sleep(seconds)
    return "slept"


# -- logging -----------------------------------------------------------------------------------
@task(bind=True)
def logs_a_line(self, text):
    logger.info("task says %s", text)
    return self.request.id


# -- signal receivers --------------------------------------------------------------------------
def _request_id(request: object) -> object:
    message = getattr(request, "message", None)
    return getattr(message, "id", None) or getattr(request, "id", None)


@signals.task_received.connect
def _received(sender, request, **kwargs):
    note("task_received", task_id=_request_id(request))


@signals.task_prerun.connect
def _prerun(sender, task_id, task, args, kwargs, **extra):
    note("task_prerun", task_id=task_id, task=task.name, args=list(args))


@signals.task_postrun.connect
def _postrun(sender, task_id, task, args, kwargs, retval, state, **extra):
    note("task_postrun", task_id=task_id, task=task.name, state=state)


@signals.task_success.connect
def _success(sender, result, **kwargs):
    note("task_success", task=sender.name, task_id=sender.request.id, result=result)


@signals.task_failure.connect
def _failure(sender, task_id, exception, args, kwargs, traceback, einfo, **extra):
    note("task_failure", task_id=task_id, exc=repr(exception))


@signals.task_retry.connect
def _retry(sender, request, reason, einfo, **kwargs):
    note("task_retry", task_id=request.id, reason=str(reason))


@signals.task_revoked.connect
def _revoked(sender, request, terminated, signum, expired, **kwargs):
    note("task_revoked", task_id=_request_id(request), expired=expired)


@signals.task_unknown.connect
def _unknown(sender, name, id, message, exc, **kwargs):  # noqa: A002 - Celery's argument name
    note("task_unknown", task_id=id, name=name)


@signals.task_rejected.connect
def _rejected(sender, message, exc, **kwargs):
    note("task_rejected", exc=repr(exc))


@signals.worker_init.connect
def _worker_init(sender, **kwargs):
    note("worker_init")


@signals.worker_ready.connect
def _worker_ready(sender, **kwargs):
    note("worker_ready")


@signals.worker_shutdown.connect
def _worker_shutdown(sender, **kwargs):
    note("worker_shutdown")


@signals.worker_process_init.connect
def _worker_process_init(sender, **kwargs):
    note("worker_process_init")
