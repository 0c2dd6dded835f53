"""Job, Report and Executor: one task execution inside a pool member (processes layer).

The main process turns a message into a Job; a pool member runs it with the Executor,
which writes the result itself (whoever executes writes the result) and hands back a small
Report for the main process to log and acknowledge.
"""

from __future__ import annotations

import reprlib
import time
import traceback
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from django.db import close_old_connections, connections

from djtasks import signals, states
from djtasks.application import App
from djtasks.backends.base import ExecutionInfo, exception_to_dict
from djtasks.exceptions import DjtasksError
from djtasks.protocol import TaskMessage
from djtasks.task import HIDDEN_ARGUMENTS, Context, Task, is_sensitive, run_in_context, using_request
from djtasks.utils import handlers
from djtasks.utils.handlers import ExceptionInfo
from djtasks.utils.log import loggable
from djtasks.worker.trace import CONTROL_FLOW, settle_control_flow
from djtasks.worker.workflow import Workflow

#: What a forked pool process inherited and must keep referenced but never use or close.
_inherited_from_parent: list[Any] = []

_short_repr = reprlib.Repr()
_short_repr.maxstring = 200
_short_repr.maxother = 200


@dataclass(frozen=True)
class Job:
    """A received message, ready to run: picklable, so prefork can send it to a child."""

    message: TaskMessage
    hostname: str
    delivery_info: dict
    acks_late: bool
    ignore_result: bool
    track_started: bool
    # Enforced by the pool and the main process (worker/features: time_limits, acks).
    time_limit: float | None = None
    soft_time_limit: float | None = None
    reject_on_worker_lost: bool = False
    acks_on_failure_or_timeout: bool = True
    #: When the main process received the message (seconds since the epoch).
    received: float | None = None

    @property
    def label(self) -> str:
        """The task's name and id, as log lines show them (escaped: both come from the message)."""
        return f"{loggable(self.message.task)}[{loggable(self.message.id)}]"


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
    """Run Jobs of one app. A pool calls it in its members (a process, a thread, or inline)."""

    def __init__(self, app: App, manage_connections: bool = True) -> None:
        self.app = app
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

    def __call__(self, job: Job) -> Report:
        if not self.manage_connections:
            return self.execute(job)
        close_old_connections()
        try:
            return self.execute(job)
        finally:
            close_old_connections()

    def execute(self, job: Job) -> Report:
        task = self.app.tasks[job.message.task]
        message = job.message
        info = execution_info(job, self.app.settings.result_extended, sensitive=is_sensitive(task))
        if job.track_started:
            self.app.backend.store(message.id, states.STARTED, info=info)
        context = request_context(job)
        # Handlers and signal receivers see self.request too, as in Celery.
        with using_request(task, context):
            return self.trace(job, task, context, info)

    def trace(self, job: Job, task: Task, context: Context, info: ExecutionInfo) -> Report:
        """Run the task with its handlers and signals; store and report its outcome."""
        message = job.message
        handlers.started(task, context)
        info = replace(info, started=datetime.now(UTC))
        started = time.perf_counter()
        try:
            value = run_in_context(task, context, message.args, message.kwargs)
        except CONTROL_FLOW as exc:
            runtime = time.perf_counter() - started
            info = replace(info, runtime=runtime)
            state, summary, requeue = settle_control_flow(self.app, job, task, context, exc, info)
            return Report(state, runtime, summary, requeue=requeue)
        except Exception as exc:
            runtime = time.perf_counter() - started
            return self.fail(job, context, exc, runtime, replace(info, runtime=runtime))
        runtime = time.perf_counter() - started
        info = replace(info, runtime=runtime)
        try:
            sent = self.workflow.on_success(message, value)
            # What the workflow sends is a child already (it is sent under this request).
            children = list(dict.fromkeys(context.children + sent))
        except Exception as exc:
            # The task ran, but what follows it could not be sent (a broker error, a step
            # this worker cannot read): fail it, as Celery does, so nothing waits for ever.
            error = DjtasksError(f"{task.name} succeeded, but its callbacks or next chain "
                                 f"step could not be sent: {exc!r}")
            return self.fail(job, context, error, runtime, info)
        # A chord's body reads its header's results: those are stored whatever ignore_result says.
        unstored = None
        if not job.ignore_result or message.chord is not None:
            unstored = self.store_success(task, job, value, replace(info, children=tuple(children)))
        self.workflow.count_in_chord(message, failed=unstored is not None)
        if unstored is not None:  # FAILURE was stored instead: the log says so
            return Report(states.FAILURE, runtime, f"{type(unstored).__name__}({unstored})",
                          error=exception_to_dict(unstored), unstored=True)
        handlers.succeeded(task, context, value)
        handlers.returned(task, context, states.SUCCESS, value, None)
        return Report(states.SUCCESS, runtime, _short_repr.repr(value))

    def fail(self, job: Job, context: Context, exc: Exception, runtime: float,
             info: ExecutionInfo) -> Report:
        """Store the failure of ``job``, then fire its errbacks and fail its canvas."""
        message = job.message
        task = self.app.tasks[message.task]
        trace = traceback.format_exc()
        error = exception_to_dict(exc)
        # With ignore_result, a failure is stored only if the task asks for it (as in Celery),
        # or a chord's join must read it.
        if not job.ignore_result or task.store_errors_even_if_ignored or message.chord is not None:
            self.app.backend.store(message.id, states.FAILURE, error, traceback=trace, info=info)
        self.workflow.on_failure(message, context, exc, trace)
        self.workflow.count_in_chord(message, failed=True)
        einfo = ExceptionInfo.from_exception(exc)
        handlers.failed(task, context, einfo)
        handlers.returned(task, context, states.FAILURE, exc, einfo)
        return Report(states.FAILURE, runtime, f"{type(exc).__name__}({_short_repr.repr(str(exc))})",
                      expected=bool(task.throws) and isinstance(exc, tuple(task.throws)),
                      error=error, traceback=trace)

    def store_success(self, task: Task, job: Job, value: Any, info: ExecutionInfo) -> Exception | None:
        """Store ``value``; if it cannot be stored, store FAILURE and return why."""
        try:
            self.app.backend.store(job.message.id, states.SUCCESS, value, info=info)
        except (TypeError, ValueError, RecursionError) as exc:
            # Not JSON serializable (or nested too deeply to encode): the task ran, but its
            # caller must learn why there is no result instead of waiting for one forever.
            error = TypeError(f"{task.name} returned a value that cannot be stored as JSON: {exc}")
            self.app.backend.store(job.message.id, states.FAILURE, exception_to_dict(error),
                                   traceback="", info=info)
            return error
        return None


def request_context(job: Job) -> Context:
    """Return ``self.request`` of the task that ``job`` runs."""
    message = job.message
    return Context(
        id=message.id, task=message.task, args=tuple(message.args), kwargs=dict(message.kwargs),
        retries=message.retries, root_id=message.root_id, parent_id=message.parent_id,
        group=message.group, hostname=job.hostname, delivery_info=job.delivery_info,
        reply_to=message.reply_to, correlation_id=message.correlation_id,
        headers=dict(message.headers), origin=message.origin, is_eager=False,
        called_directly=False, group_index=message.group_index, callbacks=message.callbacks,
        errbacks=message.errbacks, chain=message.chain, chord=message.chord,
        eta=message.eta.isoformat() if message.eta is not None else None,
        expires=message.expires.isoformat() if message.expires is not None else None,
        timelimit=(message.time_limit, message.soft_time_limit), ignore_result=job.ignore_result,
    )


def execution_info(job: Job, extended: bool = False, sensitive: bool = False) -> ExecutionInfo:
    """What the result row records of ``job``; ``extended``: its arguments as JSON too.

    A ``sensitive`` task's arguments are never stored: only their argsrepr, "[hidden]"
    when the message has none.
    """
    message = job.message
    extended = extended and not sensitive
    args_repr, kwargs_repr = shown_reprs(message, sensitive)
    return ExecutionInfo(
        task_name=message.task, worker=job.hostname,
        queue=str(job.delivery_info.get("routing_key") or ""),
        retries=message.retries, parent_id=message.parent_id, root_id=message.root_id,
        group_id=message.group, args_repr=args_repr, kwargs_repr=kwargs_repr,
        args=list(message.args) if extended else None,
        kwargs=dict(message.kwargs) if extended else None,
        received=datetime.fromtimestamp(job.received, UTC) if job.received is not None else None,
    )


def shown_reprs(message: TaskMessage, sensitive: bool) -> tuple[str, str]:
    """Return what rows and events show of ``message``'s arguments ("" when it says nothing)."""
    empty = HIDDEN_ARGUMENTS if sensitive else ""
    return message.argsrepr or empty, message.kwargsrepr or empty
