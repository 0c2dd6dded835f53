"""Following a task through its states, for ``AsyncResult.get(on_message=...)`` (client layer)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from djtasks.backends.base import ResultBackend, ResultMeta
from djtasks.exceptions import TimeoutError as ResultTimeoutError


def follow_states(backend: ResultBackend, task_id: str, on_message: Callable[[dict], Any],
                  timeout: float | None, interval: float) -> ResultMeta:
    """Call ``on_message`` with each new state of ``task_id`` until it is ready; return the last.

    Each call gets Celery's meta dict: ``task_id``, ``status``, ``result`` (for a custom
    state such as PROGRESS, the ``meta`` given to ``update_state``), ``traceback``,
    ``children`` and ``date_done``. States that come and go between two looks are not
    seen: the callback learns the latest state, not necessarily every one.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: ResultMeta | None = None
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise ResultTimeoutError(f"task {task_id} not ready after {timeout} s")
        seen = backend.wait_for_change(task_id, seen, timeout=left, interval=interval)
        on_message(meta_message(seen))
        if seen.ready:
            return seen


def meta_message(meta: ResultMeta) -> dict[str, Any]:
    """The dict ``on_message`` callbacks get, as Celery's result backends give it."""
    return {"task_id": meta.task_id, "status": meta.status, "result": meta.result,
            "traceback": meta.traceback or None, "children": list(meta.children),
            "date_done": meta.date_done}
