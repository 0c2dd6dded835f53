"""Executor and Report: one task execution inside a pool member (processes layer).

The main process turns a message into a Request (``djtasks.task.Request``); a pool member
runs it with the Executor: the trace runs the body (``task/trace.py``, as eager runs do)
and the Executor's recorder writes the result (whoever executes writes the result) and
continues the canvas. The member hands back a small Report for the main process to log
and acknowledge.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from django.db import close_old_connections, connections
from kombu.exceptions import EncodeError

from djtasks import signals, states
from djtasks.application import App
from djtasks.backends.base import ExecutionInfo, exception_to_dict
from djtasks.exceptions import DjtasksError, Retry
from djtasks.protocol import TaskMessage
from djtasks.task import HIDDEN_ARGUMENTS, Ending, ExceptionInfo, Recorder, Request, Task, is_sensitive, trace
from djtasks.worker.workflow import Workflow

#: What a forked pool process inherited and must keep referenced but never use or close.
_inherited_from_parent: list[Any] = []

_short_repr = reprlib.Repr()
_short_repr.maxstring = 200
_short_repr.maxother = 200


@dataclass(frozen=True)
class Report:
    """What the main process needs to know of a finished execution."""

    state: str
    runtime: float
    summary: str
    #: REJECTED: whether the message goes back to its queue (``Reject(requeue=True)``).
    requeue: bool = False
    #: FAILURE with an exception the task ``throws``: logged briefly, without a traceback.
    expected: bool = False
    #: FAILURE: the exception as stored, and its traceback (a custom Request's on_failure).
    error: dict | None = None
    traceback: str = ""
    #: FAILURE stored in place of a return value that could not be stored.
    unstored: bool = False


class Executor:
    """Run Requests of one app. A pool calls it in its members (a process, a thread, or inline)."""

    def __init__(self, app: App, manage_connections: bool = True,
                 confirm_results_later: bool = False) -> None:
        self.app = app
        # Only where the pool member's loop confirms the result writes: the consumer's own
        # thread, or a prefork child that calls idle() (backends/unconfirmed.py says why).
        self.confirm_results_later = confirm_results_later
        # Off only where the caller owns the thread's connection (an in-process test
        # worker runs inside the test's transaction, which this would close).
        self.manage_connections = manage_connections
        self.workflow = Workflow(app)

    def after_fork(self) -> None:
        """In a newly forked pool process: forget the parent's connections, never close them.

        The child holds copies of the parent's open database and broker connections;
        closing one would tell the server the parent's session is over, and using one
        would interleave two processes on one socket. They are set aside (the child
        leaves through os._exit, so no finalizer runs) and new ones are made on first use.
        """
        for connection in connections.all(initialized_only=True):
            if connection.connection is not None:
                _inherited_from_parent.append(connection.connection)
                connection.connection = None
        _inherited_from_parent.extend(self.app.forget_connections())
        signals.worker_process_init.send_robust(sender=None)

    def idle(self) -> None:
        """Called by a pool process before it waits for its next job: confirm the last
        result write, so that a failed one is made again now, not at the next task."""
        self.app.backend.confirm_writes()

    def __call__(self, request: Request) -> Report:
        if not self.manage_connections:
            return self.execute(request)
        close_old_connections()
        try:
            return self.execute(request)
        finally:
            close_old_connections()

    def execute(self, request: Request) -> Report:
        task = self.app.tasks[request.message.task]
        info = execution_info(request, self.app.settings.result_extended, sensitive=is_sensitive(task))
        if request.track_started:
            self.app.backend.store(request.message.id, states.STARTED, info=info)
        recorder = ResultRecorder(self.app, self.workflow, task, request,
                                  replace(info, started=datetime.now(UTC)),
                                  confirm_later=self.confirm_results_later)
        return report_of(task, trace(task, request, recorder))


class ResultRecorder(Recorder):
    """Store how an execution ended, and continue its canvas (its callbacks, chain and chord)."""

    def __init__(self, app: App, workflow: Workflow, task: Task, request: Request,
                 info: ExecutionInfo, confirm_later: bool = False) -> None:
        self.app = app
        # A chord's join reads the result, and an acks_late message is acknowledged after
        # it: both need it committed first.
        self.confirm_later = (confirm_later and request.message.chord is None
                              and not request.acks_late)
        self.workflow = workflow
        self.task = task
        self.request = request
        self.info = info
        self.sent: list[str] = []

    def follow_up(self, value: Any) -> None:
        try:
            self.sent = self.workflow.on_success(self.request.message, value)
        except Exception as exc:
            # The task ran, but what follows it could not be sent (a broker error, a step
            # this worker cannot read): fail it, as Celery does, so nothing waits for ever.
            raise DjtasksError(f"{self.task.name} succeeded, but its callbacks or next chain "
                               f"step could not be sent: {exc!r}") from exc

    def succeeded(self, value: Any, runtime: float) -> Exception | None:
        request, message = self.request, self.request.message
        # What the workflow sends is a child already (it is sent under this request).
        children = list(dict.fromkeys(request.children + self.sent))
        # A chord's body reads its header's results: those are stored whatever ignore_result says.
        unstored = None
        if not request.ignore_result or message.chord is not None:
            unstored = self.store_success(value, replace(self.info, runtime=runtime,
                                                         children=tuple(children)))
        self.workflow.count_in_chord(message, failed=unstored is not None)
        return unstored

    def failed(self, exc: BaseException, einfo: ExceptionInfo, runtime: float) -> None:
        """Store the failure, then fire the errbacks and fail the canvas."""
        request, message = self.request, self.request.message
        # With ignore_result, a failure is stored only if the task asks for it (as in Celery),
        # or a chord's join must read it.
        if not request.ignore_result or self.task.store_errors_even_if_ignored \
                or message.chord is not None:
            self.app.backend.store(message.id, states.FAILURE, exception_to_dict(exc),
                                   traceback=einfo.traceback,
                                   info=replace(self.info, runtime=runtime))
        self.workflow.on_failure(message, request, exc, einfo.traceback)
        self.workflow.count_in_chord(message, failed=True)

    def retried(self, retry: Retry, einfo: ExceptionInfo, runtime: float) -> None:
        # The retry is in the queue already: its result row says why, until it runs.
        reason = retry.exc if retry.exc is not None else retry
        self.app.backend.store(self.request.message.id, states.RETRY, exception_to_dict(reason),
                               traceback=einfo.traceback, info=replace(self.info, runtime=runtime))

    def store_success(self, value: Any, info: ExecutionInfo) -> Exception | None:
        """Store ``value``; if it cannot be stored, store FAILURE and return why."""
        task_id = self.request.message.id
        try:
            # What was just sent (a chain's next step, a callback) may finish before an
            # unconfirmed write commits; its caller then reads this result (``res.parent``).
            self.app.backend.store(task_id, states.SUCCESS, value, info=info,
                                   confirm=not self.confirm_later or bool(self.sent))
        except (TypeError, ValueError, RecursionError) as exc:
            # Not JSON serializable (or nested too deeply to encode): the task ran, but its
            # caller must learn why there is no result instead of waiting for one forever.
            # kombu's EncodeError, as Celery stores for a result its backend cannot encode.
            error = EncodeError(f"{self.task.name} returned a value that cannot be stored as JSON: {exc}")
            self.app.backend.store(task_id, states.FAILURE, exception_to_dict(error),
                                   traceback="", info=info)
            return error
        return None


def report_of(task: Task, ending: Ending) -> Report:
    """Return the Report the main process logs and settles the message by."""
    state, value, runtime = ending.state, ending.value, ending.runtime
    if state == states.SUCCESS:
        return Report(state, runtime, _short_repr.repr(value))
    if state == states.RETRY:
        return Report(state, runtime, str(value))
    if state == states.IGNORED:
        return Report(state, runtime, "ignored")
    if state == states.REJECTED:
        return Report(state, runtime, str(value), requeue=value.requeue)
    if ending.unrecorded:  # FAILURE was stored instead of the value: the log says so
        return Report(state, runtime, f"{type(value).__name__}({value})",
                      error=exception_to_dict(value), unstored=True)
    return Report(state, runtime, f"{type(value).__name__}({_short_repr.repr(str(value))})",
                  expected=bool(task.throws) and isinstance(value, tuple(task.throws)),
                  error=exception_to_dict(value),
                  traceback=ending.einfo.traceback if ending.einfo is not None else "")


def execution_info(request: Request, extended: bool = False, sensitive: bool = False) -> ExecutionInfo:
    """What the result row records of ``request``; ``extended``: its arguments as JSON too.

    A ``sensitive`` task's arguments are never stored: only their argsrepr, "[hidden]"
    when the message has none.
    """
    message = request.message
    extended = extended and not sensitive
    args_repr, kwargs_repr = shown_reprs(message, sensitive)
    return ExecutionInfo(
        task_name=message.task, worker=request.hostname or "",
        queue=str(request.delivery_info.get("routing_key") or ""),
        retries=message.retries, parent_id=message.parent_id, root_id=message.root_id,
        group_id=message.group, args_repr=args_repr, kwargs_repr=kwargs_repr,
        args=list(message.args) if extended else None,
        kwargs=dict(message.kwargs) if extended else None,
        received=datetime.fromtimestamp(request.received, UTC) if request.received is not None else None,
    )


def shown_reprs(message: TaskMessage, sensitive: bool) -> tuple[str, str]:
    """Return what rows and events show of ``message``'s arguments ("" when it says nothing)."""
    empty = HIDDEN_ARGUMENTS if sensitive else ""
    return message.argsrepr or empty, message.kwargsrepr or empty
