"""Request: one execution of a task, as ``self.request`` shows it and the worker runs it (client layer).

A Request wraps the TaskMessage it executes: the fields Celery's ``Context`` gives a task
body (``id``, ``args``, ``retries``, ``delivery_info``, ``eta``, ...) read the message, so
nothing is copied. The worker's main process builds one per received message (of the
task's own Request class, when it names one), sends it to a pool member (it pickles as
its fields) and, when it is done, calls its ``on_*`` hooks, as Celery does::

    class MyRequest(Request):
        def on_timeout(self, soft, timeout):
            super().on_timeout(soft, timeout)
            if not soft:
                logger.warning("A hard time limit killed %s", self.id)

    @task(Request=MyRequest)
    def crunch(): ...

Those hooks run in the main process after the result is stored; they cannot change the
outcome, and one that raises is logged. A task called directly (``add(2, 2)``) sees a
blank Request: no message, ``called_directly`` true.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from djtasks.protocol import TaskMessage
from djtasks.utils.log import loggable, task_log_context

#: What a task called directly runs "for": no message, every field blank (id and name None).
_DIRECT_CALL = TaskMessage(id="called-directly", task="called-directly")


class Request:
    """One execution of a task message; subclass it and override the ``on_*`` hooks."""

    utc = True

    def __init__(self, message: TaskMessage | None = None, *, hostname: str | None = None,  # noqa: PLR0913 - a keyword per field the worker decides
                 delivery_info: dict[str, Any] | None = None, is_eager: bool = False,
                 acks_late: bool = False, ignore_result: bool = False,
                 track_started: bool = False, time_limit: float | None = None,
                 soft_time_limit: float | None = None, reject_on_worker_lost: bool = False,
                 acks_on_failure_or_timeout: bool = True, received: float | None = None) -> None:
        self.message = message if message is not None else _DIRECT_CALL
        self.hostname = hostname
        self.delivery_info = delivery_info if delivery_info is not None else {}
        self.is_eager = is_eager
        self.ignore_result = ignore_result
        # Enforced by the pool and the main process (worker/features: time_limits, acks).
        self.acks_late = acks_late
        self.track_started = track_started
        self.time_limit = time_limit
        self.soft_time_limit = soft_time_limit
        self.reject_on_worker_lost = reject_on_worker_lost
        self.acks_on_failure_or_timeout = acks_on_failure_or_timeout
        #: When the main process received the message (seconds since the epoch).
        self.received = received
        #: Ids of the tasks this execution sent, in order: stored as its result's children.
        self.children: list[str] = []

    # -- to a pool member and back: the fields, in order, without their names ---------------
    def __getstate__(self) -> tuple:
        # A tuple, not the instance's dict: the main process pickles one per message, and the
        # names of the fields would be most of the work. A subclass's own attributes follow.
        state = self.__dict__
        extra = {key: state[key] for key in state.keys() - _KNOWN} if len(state) > len(_KNOWN) else None
        return tuple(state[key] for key in _SENT), extra

    def __setstate__(self, state: tuple) -> None:
        values, extra = state
        self.__dict__.update(zip(_SENT, values, strict=True))
        self.children = []  # this execution's own, in the member that runs it
        if extra:
            self.__dict__.update(extra)

    # -- what Celery's Context gives a task body -------------------------------------------
    @property
    def called_directly(self) -> bool:
        return self.message is _DIRECT_CALL

    @property
    def id(self) -> str | None:
        return None if self.message is _DIRECT_CALL else self.message.id

    @property
    def task(self) -> str | None:
        """The task's name (as on Celery's Context; ``name`` too)."""
        return None if self.message is _DIRECT_CALL else self.message.task

    name = task

    @property
    def args(self) -> tuple:
        return self.message.args

    @property
    def kwargs(self) -> Mapping[str, Any]:
        return self.message.kwargs

    @property
    def retries(self) -> int:
        return self.message.retries

    @property
    def root_id(self) -> str | None:
        return self.message.root_id

    @property
    def parent_id(self) -> str | None:
        return self.message.parent_id

    @property
    def group(self) -> str | None:
        return self.message.group

    @property
    def group_index(self) -> int | None:
        return self.message.group_index

    @property
    def reply_to(self) -> str | None:
        return self.message.reply_to

    @property
    def correlation_id(self) -> str | None:
        return self.message.correlation_id

    @property
    def headers(self) -> Mapping[str, Any]:
        return self.message.headers

    @property
    def origin(self) -> str | None:
        return self.message.origin

    @property
    def callbacks(self) -> list | None:
        return self.message.callbacks

    @property
    def errbacks(self) -> list | None:
        return self.message.errbacks

    @property
    def chain(self) -> list | None:
        return self.message.chain

    @property
    def chord(self) -> Mapping[str, Any] | None:
        return self.message.chord

    @property
    def eta(self) -> str | None:
        """When the message was due (ISO 8601, as Celery gives it)."""
        eta = self.message.eta
        return eta.isoformat() if eta is not None else None

    @property
    def expires(self) -> str | None:
        """When the message expires (ISO 8601, as Celery gives it)."""
        expires = self.message.expires
        return expires.isoformat() if expires is not None else None

    @property
    def timelimit(self) -> tuple[float | None, float | None]:
        """The call's own ``(time_limit, soft_time_limit)``, seconds or None."""
        return self.message.time_limit, self.message.soft_time_limit

    @property
    def label(self) -> str:
        """The task's name and id, as log lines show them (escaped: both come from the message)."""
        return f"{loggable(self.task or '')}[{loggable(self.id or '')}]"

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.label}>"

    # -- Celery's worker hooks, called in the main process once the execution is over -------
    def on_success(self, failed__retval__runtime: tuple[bool, Any, float], **kwargs: Any) -> None:
        """The task returned: ``(False, summary of its value, runtime)``."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True,
                   return_ok: bool = False) -> None:
        """The task failed, or its process died: ``exc_info.exception`` says how."""

    def on_retry(self, exc_info: Any) -> None:
        """The task asked to be retried; it was sent again already."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """The task ran past its soft or hard time limit of ``timeout`` seconds."""


#: What crosses to a pool member (``children`` starts empty there).
_SENT = ("message", "hostname", "delivery_info", "is_eager", "ignore_result", "acks_late",
         "track_started", "time_limit", "soft_time_limit", "reject_on_worker_lost",
         "acks_on_failure_or_timeout", "received")
_KNOWN = frozenset({*_SENT, "children"})

_current_request: ContextVar[Request | None] = ContextVar("djtasks_request", default=None)


def current_request() -> Request | None:
    """Return the request of the task executing in this thread or process, if any."""
    return _current_request.get()


@contextlib.contextmanager
def entered(task_name: str, request: Request | None) -> Iterator[None]:
    """Make ``request`` the current one for the block (body, handlers, signals, logging)."""
    token = _current_request.set(request)
    try:
        if request is None:
            yield
        else:
            with task_log_context(task_name, request.id or ""):
                yield
    finally:
        _current_request.reset(token)


def detached_request() -> contextlib.AbstractContextManager[None]:
    """Run the block as if no task were running (a retry is not a child of its own run)."""
    return entered("", None)
