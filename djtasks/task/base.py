"""Task: what calling a task does (publish) and what running it does (client layer).

``@task`` builds one Task subclass per function and registers a single instance. The same
object is used by callers (``delay``, ``apply_async``) and by the worker (``run`` inside
its Request, see ``task/trace.py``).
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from djtasks.canvas.signature import Signature
from djtasks.exceptions import MaxRetriesExceededError, Retry
from djtasks.registry import app_or_default
from djtasks.task.request import Request, current_request, detached_request
from djtasks.utils.rates import parse_rate

if TYPE_CHECKING:
    from djtasks.application import App
    from djtasks.result import AsyncResult, EagerResult

#: Options of a task's definition and of publishing its calls.
DEFINITION_OPTIONS = frozenset({
    "name", "bind", "base", "serializer", "queue", "routing_key", "priority", "typing",
})
#: Options the worker's features own: each feature (``worker/features/``) declares its
#: own, and ``tests/unit/test_features.py`` pins this set to their union. (The client layer
#: cannot import the worker's, and ``@task`` runs where no worker does.)
FEATURE_OPTIONS = frozenset({
    "ignore_result", "track_started", "store_errors_even_if_ignored", "throws", "sensitive",
    "max_retries", "default_retry_delay", "autoretry_for", "dont_autoretry_for",
    "retry_kwargs", "retry_backoff", "retry_backoff_max", "retry_jitter",
    "time_limit", "soft_time_limit", "rate_limit", "expires", "acks_late",
    "reject_on_worker_lost", "Request",
})
#: Options ``@task`` accepts; anything else is a TypeError naming the closest of them.
TASK_OPTIONS = DEFINITION_OPTIONS | FEATURE_OPTIONS

#: What a sensitive task's arguments read as, wherever they would be shown.
HIDDEN_ARGUMENTS = "[hidden]"


def call_lineage(task_id: str, parent_id: str | None = None,
                 root_id: str | None = None) -> tuple[str | None, str]:
    """Return the parent and root ids of call ``task_id``: as given, else from the running task.

    A call made inside a running task is its child, and shares its root; a call made
    elsewhere has no parent and is its own root.
    """
    running = current_request()
    if running is not None:
        parent_id = parent_id or running.id
        root_id = root_id or running.root_id or running.id
    return parent_id, root_id or task_id


def retry_call_options(request: Request) -> dict[str, Any]:
    """Return the apply_async options that send ``request``'s task again, as it was sent.

    Same id, same place in its canvas, same queue (the exchange and routing key it came by),
    same expiry and limits; ``retries`` one more.
    """
    delivery = request.delivery_info or {}
    options: dict[str, Any] = {
        "task_id": request.id, "retries": request.retries + 1, "add_to_parent": False,
        "link": request.callbacks, "link_error": request.errbacks, "chain": request.chain,
        "chord": request.chord, "group_id": request.group, "group_index": request.group_index,
        "parent_id": request.parent_id, "root_id": request.root_id,
        "headers": dict(request.headers or {}),
        "expires": datetime.fromisoformat(request.expires) if request.expires else None,
        "time_limit": request.timelimit[0], "soft_time_limit": request.timelimit[1],
        "priority": delivery.get("priority"), "ignore_result": request.ignore_result,
    }
    if delivery.get("routing_key"):
        options["queue"] = delivery["routing_key"]
        options["routing_key"] = delivery["routing_key"]
        options["exchange"] = delivery.get("exchange") or None
    return {key: value for key, value in options.items() if value is not None}


#: ``apply_async`` options that this release implements; anything else is a TypeError.
CALL_OPTIONS = frozenset({
    "queue", "routing_key", "exchange", "priority", "task_id", "headers", "serializer",
    "ignore_result", "retry", "retry_policy", "exchange_type", "shadow", "expires",
    # The canvas: callbacks, and where a call sits in a chain, group or chord.
    "link", "link_error", "chain", "chord", "group_id", "group_index", "parent_id", "root_id",
    "add_to_parent",
    # Execution (issue 4): how many times this call was already retried (Task.retry sets it).
    "retries",
    # When to run: seconds from now, or an aware datetime (not both).
    "countdown", "eta",
    # Time limits of this call, seconds (the timelimit header); else the task's, else the worker's.
    "time_limit", "soft_time_limit",
    # What logs, events and the result row show of the arguments (Celery's names).
    "argsrepr", "kwargsrepr",
})


class Task:
    """Base class of every task. Subclass it (``base=``) to share options or behaviour."""

    name: ClassVar[str]
    #: Check call arguments against ``run``'s signature before publishing.
    typing: ClassVar[bool] = True
    bind: ClassVar[bool] = False
    serializer: ClassVar[str | None] = None
    queue: ClassVar[str | None] = None
    routing_key: ClassVar[str | None] = None
    priority: ClassVar[int | None] = None
    #: None: follow the app's ``task_ignore_result`` / ``task_acks_late`` / ``task_track_started``.
    ignore_result: ClassVar[bool | None] = None
    acks_late: ClassVar[bool | None] = None
    track_started: ClassVar[bool | None] = None
    #: Retries (Celery's defaults): ``self.retry()`` gives up after ``max_retries`` (None:
    #: never), waiting ``default_retry_delay`` seconds unless told otherwise.
    max_retries: ClassVar[int | None] = 3
    default_retry_delay: ClassVar[float] = 180
    #: Exceptions that retry the task by themselves, and those excluded from that.
    autoretry_for: ClassVar[tuple[type[BaseException], ...]] = ()
    dont_autoretry_for: ClassVar[tuple[type[BaseException], ...]] = ()
    #: Keyword arguments of the automatic ``retry()`` (e.g. ``{"max_retries": 5}``).
    retry_kwargs: ClassVar[Mapping[str, Any]] = {}
    #: Exponential backoff of automatic retries: True (1 s factor) or the factor in seconds.
    retry_backoff: ClassVar[bool | float] = False
    retry_backoff_max: ClassVar[float] = 600
    retry_jitter: ClassVar[bool] = True
    #: Expected exceptions: the task fails, logged briefly, without a traceback.
    throws: ClassVar[tuple[type[BaseException], ...]] = ()
    #: "10/s", "100/m", "5/h" or a number per second; None: no limit (per worker).
    rate_limit: ClassVar[str | float | None] = None
    #: Seconds; None: follow the app's ``task_time_limit`` / ``task_soft_time_limit``.
    time_limit: ClassVar[float | None] = None
    soft_time_limit: ClassVar[float | None] = None
    #: Default ``expires`` of each call: seconds or an aware datetime.
    expires: ClassVar[Any] = None
    #: With acks_late, requeue instead of fail when the pool process dies; None: the app's.
    reject_on_worker_lost: ClassVar[bool | None] = None
    store_errors_even_if_ignored: ClassVar[bool] = False
    #: The worker's request class for this task (a class or a dotted name); None: default.
    Request: ClassVar[Any] = None
    #: Arguments too private to show: messages carry argsrepr "[hidden]" (unless the call
    #: gives its own), and the worker never stores them as JSON, even with result_extended.
    sensitive: ClassVar[bool] = False

    #: The app this task publishes through; None means the default app (``djtasks.app``).
    _app: App | None = None

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define run()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task body inline, in this process, as calling the function would."""
        return self.run(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<@task: {getattr(self, 'name', type(self).__qualname__)}>"

    @property
    def app(self) -> App:
        """The app this task was made for, else the default one (a shared task)."""
        return app_or_default(self._app)

    @property
    def request(self) -> Request:
        """The request of the current execution; a blank one when called directly."""
        return current_request() or Request()

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult | EagerResult:
        """Publish a call with these arguments; shortcut of ``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult | EagerResult:
        """Publish a call; returns the AsyncResult to read its outcome back.

        With ``task_always_eager`` the call is run here and now instead (``apply()``).
        """
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        if self.app.settings.task_always_eager:
            # Celery's testing mode: run here and now, canvas options included (see apply()).
            # The same calls as publishing refuses are refused, so a typo fails in tests too:
            # apply() checks the options, and the priority is checked here.
            if options.get("priority") is not None:
                check_priority(options["priority"])
            options.pop("_on_commit", None)  # eager: runs now, whatever the transaction does
            return self.apply(args, kwargs, **options)
        self.check_arguments(args, kwargs)
        return self.app.send_task(self.name, args, kwargs, _task=self, **options)

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> AsyncResult | EagerResult:
        """``delay()`` that happens only if the current transaction commits (Celery 5.4's name).

        Celery's returns None; this one returns the AsyncResult, its id known at once.
        """
        return self.apply_async_on_commit(args, kwargs)

    def apply_async_on_commit(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult | EagerResult:
        """``apply_async()`` that happens only if the current transaction commits.

        On RabbitMQ and Redis the message is written to the outbox table in the caller's
        transaction and sent right after the commit; a worker sends it if this process
        dies first (at least once). Rolled back, no task. Outside a transaction, and on
        ``django://`` (whose message is a row of the transaction already), it is sent now.
        With ``task_always_eager`` it runs now, as ``apply_async()`` does.
        """
        return self.apply_async(args, kwargs, _on_commit=True, **options)

    def apply(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None, **options: Any,
    ) -> EagerResult:
        """Run the task here and now, and return its outcome as an EagerResult.

        ``throw`` re-raises a failure (default: ``task_eager_propagates``); ``retries``,
        ``headers``, ``parent_id``, ``root_id``, ``group_id`` and ``group_index`` set those
        fields of ``self.request``. What ``link``, ``link_error`` and ``chain`` set off runs
        eagerly too, before a failure is re-raised. The other apply_async options are
        accepted and mean nothing here, as in Celery.
        """
        return self.app.apply_eagerly(self, tuple(args or ()), dict(kwargs or {}), task_id, **options)

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError, as calling ``run`` would, when the arguments do not fit it."""
        if not self.typing:
            return
        try:
            signature = inspect.signature(self.run)
        except (TypeError, ValueError):  # builtins without a signature: nothing to check
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None

    # -- signatures (Celery's canvas names) -------------------------------------------
    def signature(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                  **options: Any) -> Signature:
        """Return a Signature of a call of this task."""
        return Signature(self, args, kwargs, options)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """Shortcut: ``add.s(2, 2)`` is ``add.signature((2, 2))``."""
        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: arguments given when it is called are ignored."""
        return Signature(self, args, kwargs, immutable=True)

    def map(self, it: Iterable[Any]) -> Signature:
        """One message running this task for each item of ``it`` (``celery.map``)."""
        from djtasks.canvas.chunks import xmap

        return xmap(self.s(), it, app=self._app)

    def starmap(self, it: Iterable[Any]) -> Signature:
        """One message running this task with each item of ``it`` as its arguments."""
        from djtasks.canvas.chunks import xstarmap

        return xstarmap(self.s(), it, app=self._app)

    def chunks(self, it: Iterable[Any], n: int) -> Signature:
        """Split ``it`` into a group of starmaps of ``n`` items each."""
        from djtasks.canvas.chunks import chunks

        return chunks(self.s(), it, n, app=self._app)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        """Return the result handle of an earlier call of this task."""
        return self.app.AsyncResult(task_id, task_name=self.name)

    # -- execution (Celery's names) ------------------------------------------------------
    def retry(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              exc: BaseException | None = None, throw: bool = True, eta: Any = None,
              countdown: float | None = None, max_retries: int | None = None,
              **options: Any) -> Retry:
        """Send this task again (same id, ``retries`` + 1) and raise Retry: ``raise self.retry()``.

        It runs again after ``countdown`` seconds or at ``eta`` (``default_retry_delay``
        when neither is given). Past ``max_retries`` (the task's unless given) ``exc`` is
        raised, or MaxRetriesExceededError when there is none, and the task fails.
        """
        request = self.request
        if request.called_directly:
            # Not run by a worker or apply(): there is no message to send again.
            raise exc if exc is not None else RuntimeError(
                f"{self.name}.retry(): the task was called directly, not run by a worker")
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            # The message is stored and logged: a sensitive task's arguments stay out of it.
            shown = (HIDDEN_ARGUMENTS, HIDDEN_ARGUMENTS) if self.sensitive else (request.args,
                                                                                 request.kwargs)
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{shown[0]} kwargs:{shown[1]}",
                task_args=request.args, task_kwargs=request.kwargs)
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        call = self.signature(request.args if args is None else args,
                              request.kwargs if kwargs is None else kwargs,
                              **{**retry_call_options(request), **options})
        if not request.is_eager:  # eager mode runs the retry itself, at once
            with detached_request():
                self.apply_async(call.args, call.kwargs, countdown=countdown, eta=eta, **call.options)
        retry = Retry(exc=exc, when=eta if eta is not None else countdown, sig=call)
        if throw:
            raise retry
        return retry

    def update_state(self, task_id: str | None = None, state: str | None = None,
                     meta: Any = None, **kwargs: Any) -> None:
        """Store ``state`` (a custom one such as ``"PROGRESS"`` too) with ``meta`` as its result."""
        task_id = task_id or self.request.id
        if task_id is None:
            raise RuntimeError(f"{self.name}.update_state(): no task id (called directly?)")
        if not state:  # the store's status column holds no NULL: say so before the database does
            raise ValueError(f"{self.name}.update_state(): expected a state, such as \"PROGRESS\"")
        self.app.backend.store(task_id, state, meta)

    def on_success(self, retval: Any, task_id: str, args: tuple, kwargs: Mapping[str, Any]) -> None:
        """Handler: the task returned ``retval`` (run where the task ran, after storing it)."""

    def on_failure(self, exc: BaseException, task_id: str, args: tuple,
                   kwargs: Mapping[str, Any], einfo: Any) -> None:
        """Handler: the task raised ``exc`` and failed (``einfo`` holds the traceback)."""

    def on_retry(self, exc: BaseException | None, task_id: str, args: tuple,
                 kwargs: Mapping[str, Any], einfo: Any) -> None:
        """Handler: the task will be retried; ``exc`` is the reason given to ``retry()``."""

    def after_return(self, status: str, retval: Any, task_id: str, args: tuple,
                     kwargs: Mapping[str, Any], einfo: Any) -> None:
        """Handler: called last, after every outcome (``status`` is its state)."""


def build_task(
    fun: Callable[..., Any], app: App | None = None, **options: Any,
) -> Task:
    """Make a Task instance whose body is ``fun``; ``options`` become class attributes."""
    check_options(options)
    if options.get("priority") is not None:
        check_priority(options["priority"])
    parse_rate(options.get("rate_limit"))  # a bad rate fails here, not in the worker
    base = options.pop("base", None) or Task
    if not (isinstance(base, type) and issubclass(base, Task)):
        raise TypeError(f"base: expected a Task subclass, got {base!r}")
    bind = options.pop("bind", False)
    name = options.pop("name", None) or task_name(fun, app)
    attrs = {
        "name": name,
        "run": fun if bind else staticmethod(fun),
        "bind": bind,
        "__doc__": fun.__doc__,
        "__module__": fun.__module__,
        "__qualname__": fun.__qualname__,
        "__wrapped__": staticmethod(fun),
        "_app": app,
        **options,
    }
    return type(fun.__name__, (base,), attrs)()


def check_options(options: Mapping[str, Any]) -> None:
    """Raise TypeError naming the closest valid option for any unknown one."""
    for key in options:
        if key not in TASK_OPTIONS:
            close = difflib.get_close_matches(key, TASK_OPTIONS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"@task() got an unexpected option {key!r}{hint}")


def task_name(fun: Callable[..., Any], app: App | None) -> str:
    """Name a task ``module.function``, as Celery does, ``__main__`` included."""
    module_name = fun.__module__
    if module_name == "__main__":
        main = getattr(app, "main", None) or _main_module_name()
        return f"{main}.{fun.__name__}"
    return f"{module_name}.{fun.__name__}"


def _main_module_name() -> str:
    # A script run with ``python -m pkg.mod`` knows its real module name; a plain
    # ``python script.py`` does not, and its tasks keep the ``__main__`` prefix (as in Celery).
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None and spec.name else "__main__"


def check_call_options(options: Mapping[str, Any]) -> None:
    """Raise TypeError for an apply_async option this release does not implement."""
    for key in options:
        if key not in CALL_OPTIONS and key != "_task":
            close = difflib.get_close_matches(key, CALL_OPTIONS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"apply_async() got an unsupported option {key!r}{hint}")


def is_sensitive(task: Task | None) -> bool:
    """True when ``task`` (None: one this process does not know) hides its arguments."""
    return bool(getattr(task, "sensitive", False))


def argument_reprs(task: Task | None, options: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Return the argsrepr and kwargsrepr a call publishes; None: the protocol's default repr.

    The call's own ``argsrepr``/``kwargsrepr`` win; a sensitive task's are hidden otherwise.
    """
    default = HIDDEN_ARGUMENTS if is_sensitive(task) else None
    argsrepr, kwargsrepr = options.get("argsrepr"), options.get("kwargsrepr")
    return (default if argsrepr is None else str(argsrepr),
            default if kwargsrepr is None else str(kwargsrepr))


def check_priority(value: Any) -> int:
    """Return ``value`` if it is a message priority (an integer 0-9), else raise ValueError."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 9:
        raise ValueError(f"priority: expected an integer from 0 to 9, got {value!r}")
    return value
