"""The request-class feature: a task's own ``Request`` subclass and its ``on_*`` hooks (processes layer).

A task names its Request class (``Request = MyRequest`` on the task class, or a dotted
path, or through ``task_annotations``); the consumer builds each message's Request of
that class, and once the execution is over this feature calls its hooks, in the main
process, after the result is stored (by the pool member, or by the main process for a
member that was killed). See ``djtasks.task.request``.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from djtasks import states
from djtasks.application import App
from djtasks.backends.base import exception_from_dict
from djtasks.exceptions import ImproperlyConfigured, NotRegistered
from djtasks.task import ExceptionInfo, Request
from djtasks.worker.features.base import Feature
from djtasks.worker.pools.base import Outcome
from djtasks.worker.settlement import Fate, failure_to_record


class RequestClass(Feature):
    """Build each request as its task's Request class; call that class's hooks as the request ends."""

    options = frozenset({"Request"})

    def __init__(self, app: App) -> None:
        self.app = app
        self._classes: dict[str, type[Request]] = {}

    def class_for(self, name: str) -> type[Request]:
        """Return the Request class of task ``name`` (read once per task)."""
        cls = self._classes.get(name)
        if cls is None:
            try:
                task = self.app.tasks[name]
            except NotRegistered:
                return Request
            cls = self._classes[name] = request_class(task)
        return cls

    def after_complete(self, request: Any, outcome: Outcome, fate: Fate) -> None:
        if type(request) is Request:  # the default hooks do nothing
            return
        error = failure_to_record(outcome)
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
                                   f"djtasks.task.Request, got {named!r}")
    return found


def _exception(report: Any) -> BaseException:
    if report.error:
        return exception_from_dict(report.error)
    return Exception(report.summary)
