"""Request: a task execution as the worker's main process sees it, with hooks (processes layer).

A task can name its own Request subclass (``Request = MyRequest`` on the task class, or its
dotted path, or through ``task_annotations``) to act on how executions end, as in Celery::

    class MyRequest(Request):
        def on_timeout(self, soft, timeout):
            super().on_timeout(soft, timeout)
            if not soft:
                logger.warning("A hard time limit killed %s", self.id)

        def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
            super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
            logger.warning("Task %s failed: %r", self.id, exc_info.exception)

The hooks run in the main process after the result is stored by the pool member (or by
the main process for a member that was killed); they cannot change the outcome. A hook
that raises is logged and the worker goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils.module_loading import import_string

from djtasks import states
from djtasks.application import App
from djtasks.backends.base import exception_from_dict
from djtasks.exceptions import ImproperlyConfigured, NotRegistered
from djtasks.utils.handlers import ExceptionInfo
from djtasks.worker.pools.base import Outcome
from djtasks.worker.settlement import failure_to_record

logger = logging.getLogger("djtasks.worker")


class Request:
    """One execution of a task message; subclass it and override the ``on_*`` hooks."""

    def __init__(self, job: Any, task: Any) -> None:
        self.job = job
        self.task = task

    @property
    def id(self) -> str:
        return self.job.message.id

    @property
    def name(self) -> str:
        return self.job.message.task

    @property
    def args(self) -> tuple:
        return tuple(self.job.message.args)

    @property
    def kwargs(self) -> dict:
        return dict(self.job.message.kwargs)

    @property
    def hostname(self) -> str:
        return self.job.hostname

    @property
    def delivery_info(self) -> dict:
        return self.job.delivery_info

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}[{self.id}]>"

    def on_success(self, failed__retval__runtime: tuple[bool, Any, float], **kwargs: Any) -> None:
        """The task returned: ``(False, summary of its value, runtime)``."""

    def on_failure(self, exc_info: ExceptionInfo, send_failed_event: bool = True,
                   return_ok: bool = False) -> None:
        """The task failed, or its process died: ``exc_info.exception`` says how."""

    def on_retry(self, exc_info: ExceptionInfo) -> None:
        """The task asked to be retried; it was sent again already."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """The task ran past its soft or hard time limit of ``timeout`` seconds."""


def request_class(task: Any) -> type[Request]:
    """Return the Request class a task names (``Request`` attribute), or the default one."""
    named = getattr(task, "Request", None)
    if named is None:
        return Request
    found = named
    if isinstance(named, str):
        try:
            found = import_string(named)
        except ImportError as exc:
            raise ImproperlyConfigured(f"{task.name}.Request: cannot import {named!r}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, Request)):
        raise ImproperlyConfigured(f"{task.name}.Request: expected a subclass of "
                                   f"djtasks.worker.task_request.Request, got {named!r}")
    return found


class RequestHooks:
    """Call the hooks of each task's Request class as its executions end (main process)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._classes: dict[str, type[Request]] = {}

    def class_for(self, name: str) -> type[Request]:
        cls = self._classes.get(name)
        if cls is None:
            try:
                task = self.app.tasks[name]
            except NotRegistered:
                return Request
            cls = self._classes[name] = request_class(task)
        return cls

    def completed(self, job: Any, outcome: Outcome) -> None:
        """Call the hooks of ``job``'s Request class for how it ended."""
        cls = self.class_for(job.message.task)
        if cls is Request:  # the default hooks do nothing: skip building the request
            return
        try:
            self._call(cls(job, self.app.tasks[job.message.task]), outcome, failure_to_record(outcome))
        except Exception:
            logger.exception("The Request hooks of %s raised; the worker goes on", job.label)

    @staticmethod
    def _call(request: Request, outcome: Outcome, error: BaseException | None) -> None:
        if outcome.timeout is not None:  # a time limit the pool enforced
            request.on_timeout(outcome.timeout.soft, outcome.timeout.limit)
        if error is not None:
            request.on_failure(ExceptionInfo(error))
            return
        report = outcome.value
        if report is None:
            return
        if report.state == states.SUCCESS:
            request.on_success((False, report.summary, report.runtime))
        elif report.state == states.RETRY:
            request.on_retry(ExceptionInfo(_exception(report)))
        elif report.state == states.FAILURE:
            request.on_failure(ExceptionInfo(_exception(report), report.traceback))


def _exception(report: Any) -> BaseException:
    if report.error:
        return exception_from_dict(report.error)
    return Exception(report.summary)
