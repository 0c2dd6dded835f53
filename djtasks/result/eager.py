"""Eager runs: a task executed in the calling process, its outcome an EagerResult (client layer).

``Task.apply()`` and ``task_always_eager`` come here. The task runs with ``request.is_eager``
true, its handlers and the task signals fire as in a worker, and ``self.retry()`` runs the
task again at once (the countdown is not waited for) until it succeeds or gives up. Nothing
is stored in the result backend, except what the task stores itself (``update_state``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from djtasks import states
from djtasks.backends.base import ResultMeta
from djtasks.exceptions import Ignore, Reject, Retry
from djtasks.protocol import new_task_id
from djtasks.result.async_result import EagerResult
from djtasks.task import Context, Task, run_in_context, using_request
from djtasks.utils import handlers
from djtasks.utils.handlers import ExceptionInfo

if TYPE_CHECKING:
    from djtasks.application import App

logger = logging.getLogger("djtasks.eager")


def run_eagerly(app: App, task: Task, args: tuple, kwargs: dict, task_id: str | None = None, *,
                propagate: bool = False, retries: int = 0,
                headers: dict[str, Any] | None = None) -> EagerResult:
    """Run ``task`` here and now; return its outcome. ``propagate`` re-raises its failure."""
    task.check_arguments(args, kwargs)
    task_id = task_id or new_task_id()
    request = Context(id=task_id, task=task.name, args=args, kwargs=kwargs, retries=retries,
                      is_eager=True, called_directly=False, root_id=task_id,
                      headers=dict(headers or {}))
    while True:
        state, value, einfo = _attempt(task, request)
        if state != states.RETRY:
            break
        # The Retry's signature holds the arguments retry() was given (the same by default).
        sig = einfo.exception.sig
        request = replace(request, retries=request.retries + 1,
                          args=tuple(sig.args) if sig is not None else request.args,
                          kwargs=dict(sig.kwargs) if sig is not None else request.kwargs)
    if state == states.FAILURE and propagate:
        raise einfo.exception
    traceback = einfo.traceback if einfo is not None else ""
    meta = ResultMeta(task_id, state, value, traceback, datetime.now(UTC), task.name,
                      retries=request.retries)
    return EagerResult(task_id, meta, app=app)


def _attempt(task: Task, request: Context) -> tuple[str, Any, ExceptionInfo | None]:
    """Run the body once, with its handlers and signals; return state, value and the error."""
    with using_request(task, request):
        return _traced(task, request)


def _traced(task: Task, request: Context) -> tuple[str, Any, ExceptionInfo | None]:
    handlers.started(task, request)
    einfo = None
    try:
        value = run_in_context(task, request, request.args, request.kwargs)
    except Retry as exc:
        einfo = ExceptionInfo.from_exception(exc)
        state, value = states.RETRY, exc
        handlers.retried(task, request, exc, einfo)
    except Ignore as exc:
        state, value = states.IGNORED, exc
    except Reject as exc:
        state, value = states.REJECTED, exc
    except Exception as exc:
        einfo = ExceptionInfo.from_exception(exc)
        state, value = states.FAILURE, exc
        handlers.failed(task, request, einfo)
    else:
        state = states.SUCCESS
        handlers.succeeded(task, request, value)
    handlers.returned(task, request, state, value, einfo)
    return state, value, einfo
