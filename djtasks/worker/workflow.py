"""Workflow: what a finished task sets off in the canvas (processes layer).

After a task succeeds, its callbacks (``link``) get its value and the next step of its
chain is sent; after it fails, its errbacks fire and the rest of its chain is marked
failed (so a caller waiting on the last step learns of it instead of waiting forever).
A chord header task then counts itself in the chord's join, and the one whose count
completes the chord sends the body, or fails it, inside the join's transaction.
Everything here runs in the pool member that executed the task, as Celery's does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from djtasks import states
from djtasks.application import App
from djtasks.backends.base import exception_from_dict, exception_to_dict
from djtasks.canvas import Signature, chain, chord, group
from djtasks.canvas.callbacks import call_callbacks, call_errbacks
from djtasks.exceptions import ChordError
from djtasks.protocol import TaskMessage
from djtasks.task import Request
from djtasks.utils.log import loggable

logger = logging.getLogger("djtasks.worker")


class Workflow:
    """Continue the canvas of one app after each execution."""

    def __init__(self, app: App) -> None:
        self.app = app

    # -- success ----------------------------------------------------------------------------
    def on_success(self, message: TaskMessage, value: Any) -> list[str]:
        """Send the callbacks and the next chain step with ``value``; return the ids sent."""
        origin = {"parent_id": message.id, "root_id": message.root_id or message.id}
        sent = call_callbacks(self.app, message.callbacks or (), message.chain or (), value, origin)
        return ids_of(sent)

    # -- failure ----------------------------------------------------------------------------
    def on_failure(self, message: TaskMessage, request: Request, exc: BaseException,
                   traceback: str) -> list[str]:
        """Fire the errbacks and fail what the chain would have run; return the ids sent."""
        sent = self.call_errbacks(message.errbacks or (), request, exc, traceback)
        self.fail_steps(message.chain or (), exc, traceback)
        return sent

    def call_errbacks(self, errbacks: Iterable[Any], request: Request, exc: BaseException,
                      traceback: str | None) -> list[str]:
        """Call each errback as Celery does (see canvas.callbacks); return the ids sent."""
        sent = call_errbacks(self.app, errbacks, request, exc, traceback)
        return ids_of(sent)

    def fail_steps(self, steps: Iterable[Any], exc: BaseException, traceback: str) -> None:
        """Store FAILURE for every task of ``steps`` (chain steps that will never run)."""
        for data in steps:
            task_ids: Sequence[str | None]
            try:
                task_ids = result_ids(Signature.from_dict(data, self.app), frozen=True)
            except Exception:  # a step this worker cannot read still has its frozen id
                logger.exception("Could not read chain step %r", data)
                task_ids = [(data.get("options") or {}).get("task_id")] if isinstance(data, Mapping) else []
            for task_id in filter(None, task_ids):
                self.app.backend.store(task_id, states.FAILURE, exception_to_dict(exc),
                                       traceback=traceback)

    # -- the chord join ---------------------------------------------------------------------
    def count_in_chord(self, message: TaskMessage, failed: bool) -> list[str]:
        """Count a header task of a chord; send or fail the body if this completes it."""
        if message.chord is None or not message.group:
            return []
        with self.app.backend.chord_part_done(message.group, message.id, failed=failed) as join:
            if join is None:
                return []
            body = Signature.from_dict(join.body, self.app)
            if join.failed_task_id is None:
                logger.info("Chord %s complete: sending its body %r", loggable(join.group_id), body)
                return result_ids(body.apply_async((join.results,), parent_id=message.id,
                                                   root_id=message.root_id or message.id))
            cause = exception_from_dict(join.error) if isinstance(join.error, Mapping) else join.error
            error = ChordError(f"Dependency {join.failed_task_id} raised {cause!r}")
            logger.error("Chord %s failed: %s", loggable(join.group_id), loggable(error, 1000))
            return self.fail_body(body, error, message)

    def fail_body(self, body: Signature, error: ChordError, message: TaskMessage) -> list[str]:
        """Fail a chord's body without running it: its result, its errbacks, its chain."""
        for task_id in result_ids(body, frozen=True):
            self.app.backend.store(task_id, states.FAILURE, exception_to_dict(error))
        final = final_signature(body)
        request = Request(TaskMessage(id=final.id or message.id, task=final.task,
                                      root_id=message.root_id, parent_id=message.id,
                                      group=final.options.get("group_id")))
        errbacks = [sig.to_dict() for sig in final.options.get("link_error") or ()]
        sent = self.call_errbacks(errbacks, request, error, None)
        self.fail_steps(final.options.get("chain") or (), error, "")
        return sent


def final_signature(sig: Signature) -> Signature:
    """The call whose outcome is the outcome of ``sig`` (a chain's last step, a chord's body)."""
    if isinstance(sig, chain):
        return final_signature(sig.tasks[-1])
    if isinstance(sig, chord) and sig.body is not None:
        return final_signature(sig.body)
    return sig


def ids_of(results: Iterable[Any]) -> list[str]:
    """Task ids of the results of calls just sent (AsyncResults or GroupResults)."""
    return [task_id for result in results for task_id in result_ids(result)]


def result_ids(value: Any, frozen: bool = False) -> list[str]:
    """Task ids of a sent result (AsyncResult or GroupResult), or of a frozen signature."""
    if frozen:
        if isinstance(value, group):
            return [task_id for task in value.tasks for task_id in result_ids(task, True)]
        if isinstance(value, chain):
            return [task_id for task in value.tasks for task_id in result_ids(task, True)]
        if isinstance(value, chord):
            body = [value.body] if value.body is not None else []
            return [task_id for task in [value.header, *body] for task_id in result_ids(task, True)]
        return [value.id] if value.id else []
    results = getattr(value, "results", None)
    if results is not None:
        return [task_id for member in results for task_id in result_ids(member)]
    return [value.id]
