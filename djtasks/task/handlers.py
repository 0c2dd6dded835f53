"""A task's handlers and the task signals of one execution, in Celery's order (client layer).

Only the trace (``task/trace.py``) calls these, for worker and eager runs alike, so a
handler or a receiver sees the same calls whichever ran the task. A handler or receiver
that raises is logged and the execution goes on: the task's outcome is already decided
and stored.
"""

from __future__ import annotations

import logging
import traceback as traceback_module
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from djtasks import signals

logger = logging.getLogger("djtasks.worker")


@dataclass(frozen=True)
class ExceptionInfo:
    """An exception with its traceback, as handlers get it (Celery's ``einfo``)."""

    exception: BaseException
    traceback: str = ""
    tb: TracebackType | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_exception(cls, exc: BaseException) -> ExceptionInfo:
        text = "".join(traceback_module.format_exception(type(exc), exc, exc.__traceback__))
        return cls(exc, text, exc.__traceback__)

    @property
    def type(self) -> type[BaseException]:
        return type(self.exception)

    def __str__(self) -> str:
        return self.traceback


def _guarded(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except Exception:
        logger.exception("%s raised; the task's outcome stands", what)


def _send(signal: signals.CelerySignal, sender: Any, **kwargs: Any) -> None:
    # Robust: one failing receiver must not keep the others from hearing the news (Django
    # logs the failure on the "django.dispatch" logger).
    signal.send_robust(sender=sender, **kwargs)


def started(task: Any, request: Any) -> None:
    """Before the body: ``task_prerun``."""
    _send(signals.task_prerun, task, task_id=request.id, task=task,
          args=request.args, kwargs=request.kwargs)


def succeeded(task: Any, request: Any, retval: Any) -> None:
    """After the result is stored: ``on_success``, then ``task_success``."""
    _guarded(f"{task.name}.on_success", task.on_success, retval, request.id, request.args,
             request.kwargs)
    _send(signals.task_success, task, result=retval)


def failed(task: Any, request: Any, einfo: ExceptionInfo) -> None:
    """After the failure is stored: ``on_failure``, then ``task_failure``."""
    exc = einfo.exception
    _guarded(f"{task.name}.on_failure", task.on_failure, exc, request.id, request.args,
             request.kwargs, einfo)
    _send(signals.task_failure, task, task_id=request.id, exception=exc,
          args=request.args, kwargs=request.kwargs, traceback=einfo.tb, einfo=einfo)


def retried(task: Any, request: Any, reason: Any, einfo: ExceptionInfo) -> None:
    """After RETRY is stored: ``on_retry`` (with the reason's exception), then ``task_retry``."""
    exc = getattr(reason, "exc", None) or reason
    _guarded(f"{task.name}.on_retry", task.on_retry, exc, request.id, request.args,
             request.kwargs, einfo)
    _send(signals.task_retry, task, request=request, reason=reason, einfo=einfo)


def returned(task: Any, request: Any, state: str, retval: Any, einfo: ExceptionInfo | None) -> None:
    """Last, whatever happened: ``after_return``, then ``task_postrun``."""
    _guarded(f"{task.name}.after_return", task.after_return, state, retval, request.id,
             request.args, request.kwargs, einfo)
    _send(signals.task_postrun, task, task_id=request.id, task=task,
          args=request.args, kwargs=request.kwargs, retval=retval, state=state)
