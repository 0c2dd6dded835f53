"""Eager runs: a task executed in the calling process, its outcome an EagerResult (client layer).

``Task.apply()`` and ``task_always_eager`` come here. The task runs with ``request.is_eager``
true, its handlers and the task signals fire as in a worker, and ``self.retry()`` runs the
task again at once (the countdown is not waited for) until it succeeds or gives up. Nothing
is stored in the result backend, except what the task stores itself (``update_state``).
What the call links to (callbacks, errbacks, the rest of a chain) is the caller's
``follow_up``: the canvas runs it, eagerly too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from djtasks import states
from djtasks.backends.base import ResultMeta
from djtasks.exceptions import Retry
from djtasks.protocol import TaskMessage, new_task_id
from djtasks.result.async_result import EagerResult
from djtasks.task import Request, Task, call_lineage, trace

if TYPE_CHECKING:
    from djtasks.application import App

logger = logging.getLogger("djtasks.eager")


def run_eagerly(app: App, task: Task, args: tuple, kwargs: dict, task_id: str | None = None, *,
                propagate: bool = False, options: Mapping[str, Any] | None = None,
                follow_up: Callable[[Request, ResultMeta], list[Any]] | None = None) -> EagerResult:
    """Run ``task`` here and now; return its outcome. ``propagate`` re-raises its failure.

    ``options`` are the call's: ``retries``, ``headers``, ``parent_id``, ``root_id``,
    ``group_id`` and ``group_index`` become fields of ``self.request``; the others mean
    nothing here. ``follow_up`` is called with the final request and outcome (before a
    failure is re-raised, so errbacks run first); the results it returns, of the calls it
    set off, become the result's children.
    """
    task.check_arguments(args, kwargs)
    task_id = task_id or new_task_id()
    options = options or {}
    parent_id, root_id = call_lineage(task_id, options.get("parent_id"), options.get("root_id"))
    message = TaskMessage(id=task_id, task=task.name, args=args, kwargs=kwargs,
                          retries=options.get("retries") or 0, root_id=root_id,
                          parent_id=parent_id, group=options.get("group_id"),
                          group_index=options.get("group_index"),
                          headers=dict(options.get("headers") or {}))
    while True:
        request = Request(message, is_eager=True)
        ending = trace(task, request)  # nothing recorded: an eager run stores nothing
        if ending.state != states.RETRY:
            break
        # The Retry's signature holds the arguments retry() was given (the same by default).
        sig: Any = cast(Retry, ending.value).sig  # a Signature or None (typed object there)
        message = replace(message, retries=message.retries + 1,
                          args=tuple(sig.args) if sig is not None else message.args,
                          kwargs=dict(sig.kwargs) if sig is not None else message.kwargs)
    state, value, einfo = ending.state, ending.value, ending.einfo
    traceback = einfo.traceback if einfo is not None else ""
    meta = ResultMeta(task_id, state, value, traceback, datetime.now(UTC), task.name,
                      retries=request.retries, parent_id=parent_id or "", root_id=root_id,
                      group_id=options.get("group_id") or "")
    children = follow_up(request, meta) if follow_up is not None else []
    if state == states.FAILURE and propagate:
        assert einfo is not None, "a FAILURE state comes with the exception raised"
        raise einfo.exception
    meta = replace(meta, children=tuple(child.id for child in children))
    return EagerResult(task_id, meta, app=app, children=children)
