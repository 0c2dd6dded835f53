"""trace(): run one execution of a task and turn its end into an Ending (client layer).

This is the one place a task body runs, for a worker's pool member and for an eager run
(``apply()``, ``task_always_eager``) alike. The request is entered once, around the body,
its handlers and the task signals. A body ends in one of five ways:

- it returns: SUCCESS; ``on_success``, ``task_success``;
- it raises: FAILURE; ``on_failure``, ``task_failure``;
- ``raise self.retry(...)`` (or an ``autoretry_for`` exception): RETRY; the message was
  sent again already (same id, retries + 1); ``on_retry``, ``task_retry``;
- ``raise Ignore()``: IGNORED, nothing stored; ``raise Reject(reason, requeue=...)``:
  REJECTED, nothing stored (an ``acks_late`` message is rejected or requeued).

``after_return`` and ``task_postrun`` come last whatever happened. What is *recorded* of
the end is the Recorder's job, called before the handlers (they see the result stored):
the worker's stores results and continues the canvas; the base one records nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from djtasks import states
from djtasks.exceptions import Ignore, Reject, Retry
from djtasks.task import handlers
from djtasks.task.handlers import ExceptionInfo
from djtasks.task.request import Request, entered
from djtasks.utils.retries import backoff_delay, backoff_factor

if TYPE_CHECKING:
    from djtasks.task.base import Task


@dataclass(frozen=True)
class Ending:
    """How one execution ended: its state, the value returned or the exception raised."""

    state: str
    value: Any
    einfo: ExceptionInfo | None = None
    runtime: float = 0.0
    #: FAILURE recorded in place of a returned value that could not be recorded: no handler runs.
    unrecorded: bool = False


class Recorder:
    """Record the end of an execution; this one records nothing (eager runs)."""

    def follow_up(self, value: Any) -> None:
        """Set off what follows a success (callbacks, the next chain step); raising fails the run."""

    def succeeded(self, value: Any, runtime: float) -> Exception | None:
        """Record ``value``; return why it could not be, after recording that FAILURE instead.

        What raises here is not the task's failure but the recorder's: it goes up to the
        caller (a pool member then reports that it could not record the task).
        """
        return None

    def failed(self, exc: BaseException, einfo: ExceptionInfo, runtime: float) -> None:
        """Record the failure ``exc``."""

    def retried(self, retry: Retry, einfo: ExceptionInfo, runtime: float) -> None:
        """Record that the task will run again (``retry.exc`` is why)."""


NOTHING = Recorder()


def trace(task: Task, request: Request, recorder: Recorder = NOTHING) -> Ending:
    """Run ``task``'s body for ``request`` with its handlers and signals; record and return its end."""
    with entered(task.name, request):
        handlers.started(task, request)
        ending = _ended(task, request, recorder)
        if not ending.unrecorded:
            handlers.returned(task, request, ending.state, ending.value, ending.einfo)
        return ending


def _ended(task: Task, request: Request, recorder: Recorder) -> Ending:
    started = time.perf_counter()
    try:
        value = _run(task, request)
    except Retry as exc:
        runtime = time.perf_counter() - started
        einfo = ExceptionInfo.from_exception(exc)
        recorder.retried(exc, einfo, runtime)
        handlers.retried(task, request, exc, einfo)
        return Ending(states.RETRY, exc, einfo, runtime)
    except (Ignore, Reject) as exc:
        state = states.IGNORED if isinstance(exc, Ignore) else states.REJECTED
        return Ending(state, exc, None, time.perf_counter() - started)
    except Exception as exc:
        return _failed(task, request, recorder, exc, time.perf_counter() - started)
    runtime = time.perf_counter() - started
    try:
        recorder.follow_up(value)
    except Exception as exc:  # it ran, but what follows it could not be sent
        return _failed(task, request, recorder, exc, runtime)
    unrecorded = recorder.succeeded(value, runtime)
    if unrecorded is not None:
        return Ending(states.FAILURE, unrecorded, None, runtime, unrecorded=True)
    handlers.succeeded(task, request, value)
    return Ending(states.SUCCESS, value, None, runtime)


def _run(task: Task, request: Request) -> Any:
    try:
        return task.run(*request.args, **request.kwargs)
    except (Retry, Ignore, Reject):
        raise
    except Exception as exc:
        if not autoretries(task, exc):
            raise
        raise task.retry(exc=exc, **autoretry_options(task, request)) from None


def _failed(task: Task, request: Request, recorder: Recorder, exc: Exception,
            runtime: float) -> Ending:
    einfo = ExceptionInfo.from_exception(exc)
    recorder.failed(exc, einfo, runtime)
    handlers.failed(task, request, einfo)
    return Ending(states.FAILURE, exc, einfo, runtime)


def autoretries(task: Task, exc: Exception) -> bool:
    """True when ``exc`` is one the task's ``autoretry_for`` retries by itself."""
    return bool(task.autoretry_for) and isinstance(exc, tuple(task.autoretry_for)) \
        and not isinstance(exc, tuple(task.dont_autoretry_for))


def autoretry_options(task: Task, request: Request) -> dict[str, Any]:
    """``retry()`` arguments of an automatic retry: retry_kwargs, and the backoff countdown."""
    options = dict(task.retry_kwargs)
    if task.retry_backoff:
        options["countdown"] = backoff_delay(backoff_factor(task.retry_backoff), request.retries,
                                             task.retry_backoff_max, task.retry_jitter)
    return options
