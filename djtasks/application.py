"""App: one configuration and everything built from it (client layer).

An App holds the settings, the task registry, the router, the publisher (with its producer
pool) and the result backend. Code below the Django edge receives the App it works for;
``djtasks.app`` is the default one, built from Django settings on first use.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps as django_apps
from django.conf import settings as django_settings
from django.db import router as django_router

from djtasks import protocol
from djtasks.backends.base import ResultBackend
from djtasks.canvas.callbacks import eager_follow_up
from djtasks.canvas.signature import Signature, signature_list
from djtasks.conf import Settings, import_class
from djtasks.conf import load as load_settings
from djtasks.control import Control
from djtasks.exceptions import ImproperlyConfigured
from djtasks.publish import Publisher
from djtasks.registry import TaskRegistry
from djtasks.result import AsyncResult, EagerResult
from djtasks.result.eager import run_eagerly
from djtasks.routing import Explanation, Route, Router, RulesCache
from djtasks.schedules import crontab
from djtasks.signals import on_after_configure
from djtasks.task import (
    Task,
    argument_reprs,
    build_task,
    call_lineage,
    check_call_options,
    check_options,
    check_priority,
    current_request,
)
from djtasks.transport.aliases import broker_alias
from djtasks.utils.annotations import annotated_copy, annotation_options
from djtasks.utils.route_rules import RouteRule


class App:
    """A djtasks application: settings, tasks, routing, publishing and results."""

    def __init__(self, settings: Settings, main: str | None = None) -> None:
        self.settings = settings
        self.main = main
        self.tasks = TaskRegistry(prepare=self._annotated)
        self.routing_rules = RulesCache(self._read_routing_rules, settings.routing_rules_refresh)
        self.router = Router(
            settings.task_routes, settings.task_default_queue,
            create_missing_queues=settings.task_create_missing_queues,
            default_exchange=settings.task_default_exchange,
            default_routing_key=settings.task_default_routing_key,
            rules=self.routing_rules, default_priority=settings.task_default_priority,
        )
        self._periodic_tasks: dict[str, dict[str, Any]] = {}
        self._configured = False
        for task in _shared_tasks:
            self.tasks.register(task)
        _apps.add(self)

    def __repr__(self) -> str:
        return f"<djtasks.App {self.main or 'default'}>"

    # -- tasks --------------------------------------------------------------------------
    def task(self, *args: Any, **options: Any) -> Any:
        """Decorator: make a function a task of this app (``@app.task`` or ``@app.task(...)``)."""
        def decorate(fun: Callable[..., Any]) -> Task:
            return self.tasks.register(build_task(fun, app=self, **options))

        if len(args) == 1 and callable(args[0]) and not options:
            return decorate(args[0])
        if args:
            raise TypeError("@app.task takes options as keywords only")
        return decorate

    # -- periodic tasks ---------------------------------------------------------------
    def add_periodic_task(self, schedule: Any, sig: Signature, args: Sequence[Any] = (),
                          kwargs: Mapping[str, Any] | None = None, name: str | None = None,
                          **options: Any) -> str:
        """Add a periodic entry, as in a beat_schedule setting; returns its name.

        Call it from an ``on_after_configure`` receiver. Without ``name`` the entry is
        named by the signature's repr, as in Celery.
        """
        if not isinstance(sig, Signature):
            raise TypeError(f"add_periodic_task: expected a signature (task.s(...)), got {sig!r}")
        sig = sig.clone(args, kwargs)
        key = name or repr(sig)
        self._periodic_tasks[key] = {"task": sig.task, "schedule": schedule, "args": list(sig.args),
                                     "kwargs": dict(sig.kwargs), "options": {**sig.options, **options}}
        return key

    def periodic_schedule(self) -> dict[str, dict[str, Any]]:
        """Return every static periodic entry: the beat_schedule setting and add_periodic_task.

        The first call sends ``on_after_configure`` (once per app), where receivers add theirs.
        """
        if not self._configured:
            self._configured = True
            on_after_configure.send(sender=self)
        return {**default_periodic_tasks(self.settings), **self.settings.beat_schedule,
                **self._periodic_tasks}

    def register(self, task: Task) -> Task:
        """Add an existing Task instance to this app's registry."""
        return self.tasks.register(task)

    def _annotated(self, task: Task) -> Task:
        # task_annotations give this app's copy of the task options (a copy: shared tasks
        # belong to every app, and each app's annotations are its own).
        options = annotation_options(self.settings.task_annotations, task)
        if not options:
            return task
        try:
            check_options(options)
        except TypeError as exc:
            raise ImproperlyConfigured(f"task_annotations for {task.name}: {exc}") from None
        return annotated_copy(task, options)

    def registered(self, task: Task) -> Task:
        """Return this app's copy of ``task`` (annotated), or ``task`` if it holds another."""
        found = self.tasks.get(task.name)
        return found if isinstance(found, type(task)) else task

    # -- calling --------------------------------------------------------------------------
    def send_task(self, name: str, args: Sequence[Any] | None = None,
                  kwargs: Mapping[str, Any] | None = None, **options: Any) -> AsyncResult:
        """Publish a call of the task called ``name``; it need not be registered here."""
        task: Task | None = options.pop("_task", None)
        on_commit = bool(options.pop("_on_commit", False))
        if task is not None:
            task = self.registered(task)
        check_call_options(options)
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        route = self.route(name, args, kwargs, options, task)
        # None travels as None: the worker then decides by the task and its own settings,
        # as a Celery worker does for Celery's send_task.
        ignore_result = options.get("ignore_result")
        if ignore_result is None and task is not None:
            ignore_result = task.ignore_result
        parent = current_request()
        task_id = options.get("task_id") or protocol.new_task_id()
        parent_id, root_id = call_lineage(task_id, options.get("parent_id"), options.get("root_id"))
        # A chain step or callback is published by name: the registry still knows the task.
        argsrepr, kwargsrepr = argument_reprs(task or self.tasks.get(name), options)
        message = protocol.TaskMessage(
            id=task_id,
            task=name,
            args=args,
            kwargs=kwargs,
            shadow=options.get("shadow"),
            retries=options.get("retries") or 0,
            ignore_result=ignore_result,
            headers=options.get("headers") or {},
            priority=None if route.priority is None else check_priority(route.priority),
            expires=expiry_time(_first_given(options.get("expires"), task and task.expires)),
            eta=eta_time(options.get("countdown"), options.get("eta")),
            time_limit=_time_limit(options, "time_limit"),
            soft_time_limit=_time_limit(options, "soft_time_limit"),
            parent_id=parent_id,
            root_id=root_id,
            group=options.get("group_id"),
            group_index=options.get("group_index"),
            callbacks=wire_signatures(options.get("link"), self) or None,
            errbacks=wire_signatures(options.get("link_error"), self) or None,
            chain=list(options["chain"]) if options.get("chain") else None,
            chord=_wire_chord(options.get("chord")),
            argsrepr=argsrepr,
            kwargsrepr=kwargsrepr,
        )
        if parent is not None and options.get("add_to_parent", True):
            parent.children.append(task_id)
        outgoing = self.publisher.prepare(
            message, route, retry_policy=options.get("retry_policy"),
            serializer=options.get("serializer") or (task.serializer if task is not None else None))
        if self.publisher.follows_transaction(on_commit):
            self.publisher.send_on_commit(outgoing, retry=options.get("retry"),
                                          retry_policy=options.get("retry_policy"))
        else:
            self.publisher.send(outgoing, retry=options.get("retry"),
                                retry_policy=options.get("retry_policy"))
        return self.AsyncResult(message.id, task_name=name)

    def route(self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any],
              options: Mapping[str, Any], task: Task | None = None) -> Route:
        """Return where a call of ``name`` with these (explicit) options would be published."""
        return self.router.route(name, args, kwargs, options, task)

    def explain_route(self, name: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                      options: Mapping[str, Any] | None = None) -> Explanation:
        """Return the route a call of ``name`` gets now and where each key came from.

        The rules are read afresh, so a rule saved a moment ago shows; the task's own
        options count when ``name`` is registered here.
        """
        task = self.tasks.get(name)
        return self.router.explain(name, args, kwargs, options, task=task, fresh=True)

    def _read_routing_rules(self) -> Sequence[RouteRule] | None:
        if not django_apps.ready:
            return None  # Django is still loading its apps: no table to read yet
        backend = self.backend
        return backend.read_routing_rules() if backend.supports_routing_rules else ()

    def apply_eagerly(self, task: Task, args: tuple, kwargs: dict, task_id: str | None,
                      throw: bool | None = None, **options: Any) -> EagerResult:
        """Run ``task`` in this process, then what it links to, and wrap its outcome (``Task.apply``)."""
        check_call_options(options)
        propagate = self.settings.task_eager_propagates if throw is None else throw
        return run_eagerly(self, self.registered(task), args, kwargs, task_id, propagate=propagate,
                           options=options, follow_up=eager_follow_up(self, options))

    # -- results --------------------------------------------------------------------------
    def AsyncResult(self, task_id: str, task_name: str | None = None) -> AsyncResult:  # noqa: N802 - Celery's name
        """Return the handle of task ``task_id``."""
        return AsyncResult(task_id, app=self, task_name=task_name)

    @cached_property
    def backend(self) -> ResultBackend:
        backend = backend_from_url(self.settings.result_backend)
        backend.apply_settings(self.settings)
        return backend

    @cached_property
    def control(self) -> Control:
        """Remote control of the workers (revoke)."""
        return Control(self)

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher(self.settings)

    def databases(self) -> set[str]:
        """Return the aliases of the databases this app's broker, results and tables use."""
        found = {alias for alias in [broker_alias(self.settings.broker_url),
                                     getattr(self.backend, "alias", None)] if alias}
        found.update(django_router.db_for_write(model)
                     for model in django_apps.get_app_config("djtasks").get_models())
        return found

    def connection(self) -> Any:
        """Return a new kombu connection to the broker (the worker's own, not the pool's)."""
        return self.publisher.new_connection()

    def forget_connections(self) -> list[Any]:
        """Drop (without closing) the publisher and backend; return them (after a fork)."""
        return [self.__dict__.pop(name) for name in ("publisher", "backend") if name in self.__dict__]

    def close(self) -> None:
        """Release pooled broker connections and result listeners."""
        if "publisher" in self.__dict__:
            self.publisher.close()
        if "backend" in self.__dict__:
            self.backend.close()


#: ``result_backend`` schemes and the classes they name. Resolved on first use: the
#: database backend imports Django models, which cannot load while Django loads its apps.
BACKEND_ALIASES = {
    "django-db": "djtasks.backends.database.DatabaseBackend",
}


def backend_from_url(url: str) -> ResultBackend:
    """Build the result backend named by ``result_backend`` (an alias URL or a dotted path)."""
    parts = urlsplit(url)
    scheme = parts.scheme or url
    path = BACKEND_ALIASES.get(scheme, url if "." in url and "://" not in url else None)
    if path is None:
        raise ImproperlyConfigured(
            f"result_backend: expected 'django-db', 'django-db://<alias>' or a dotted path to a "
            f"ResultBackend class, got {url!r}"
        )
    # mypy refuses an abstract class for type[T] (python/mypy#4717); here it is only checked against.
    return import_class(path, ResultBackend, "result_backend").from_url(url)  # type: ignore[type-abstract]


def expiry_time(expires: Any, now: datetime | None = None) -> datetime | None:
    """Turn apply_async's ``expires`` (seconds from now, or a datetime) into an aware datetime."""
    if expires is None:
        return None
    if isinstance(expires, datetime):
        if expires.tzinfo is None:
            raise ValueError(f"expires: expected an aware datetime, got naive {expires!r}")
        return expires
    if isinstance(expires, (int, float)) and not isinstance(expires, bool):
        return (now or datetime.now(UTC)) + timedelta(seconds=expires)
    raise TypeError(f"expires: expected seconds or a datetime, got {expires!r}")


#: The built-in task that deletes expired results (djtasks/worker/housekeeping.py).
BACKEND_CLEANUP = "djtasks.backend_cleanup"


def default_periodic_tasks(settings: Settings) -> dict[str, dict[str, Any]]:
    """Beat's own entries: ``djtasks.backend_cleanup`` daily at 4:00, while results expire.

    A ``beat_schedule`` entry of the same name replaces it; ``result_expires = None`` drops it.
    """
    if not settings.result_expires:
        return {}
    # A run that waited 12 hours (beat or the workers were down) is dropped: the next does its work.
    return {BACKEND_CLEANUP: {"task": BACKEND_CLEANUP, "schedule": crontab(minute=0, hour=4),
                              "options": {"expires": 12 * 3600}}}


def eta_time(countdown: Any, eta: Any, now: datetime | None = None) -> datetime | None:
    """Turn ``countdown=`` (seconds from now) or ``eta=`` (an aware datetime) into the eta.

    An ISO 8601 string is taken as ``eta`` too: a signature sent through JSON brings it back
    as one. Giving both is a mistake Celery silently resolves; here it is refused.
    """
    if countdown is not None and eta is not None:
        raise TypeError(f"apply_async: expected countdown or eta, got both "
                        f"(countdown={countdown!r}, eta={eta!r})")
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, (int, float)):
            raise TypeError(f"countdown: expected seconds as a number, got {countdown!r}")
        return (now or datetime.now(UTC)) + timedelta(seconds=countdown)
    if isinstance(eta, str):
        try:
            eta = datetime.fromisoformat(eta)
        except ValueError:
            raise ValueError(f"eta: expected an ISO 8601 datetime, got {eta!r}") from None
    if eta is None or (isinstance(eta, datetime) and eta.tzinfo is not None):
        return eta
    if isinstance(eta, datetime):
        raise ValueError(f"eta: expected an aware datetime, got naive {eta!r}")
    raise TypeError(f"eta: expected a datetime, got {eta!r}")


def wire_signatures(value: Any, app: App) -> list[dict[str, Any]]:
    """Return ``link=``/``link_error=`` (a signature, a list, or None) as wire dicts."""
    return [sig.to_dict() for sig in signature_list(value, app)]


def _wire_chord(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return value.to_dict() if isinstance(value, Signature) else dict(value)


def _time_limit(options: Mapping[str, Any], key: str) -> float | None:
    # Only the call's own limit travels; the worker falls back to the task's, then its own.
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{key}: expected a positive number of seconds, got {value!r}")
    return value


def _first_given(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


# -- the default app and shared tasks ------------------------------------------------------
# ``@djtasks.task`` makes tasks before any app may exist (tasks.py is imported at
# django.setup()); they are kept here and registered with every App that is built.
_shared_tasks: list[Task] = []
_apps: weakref.WeakSet[App] = weakref.WeakSet()
_default: App | None = None
_default_lock = threading.Lock()


def shared_task(*args: Any, **options: Any) -> Any:
    """Decorator: make a task of the default app, registered with every app (``@task``)."""
    def decorate(fun: Callable[..., Any]) -> Task:
        task = build_task(fun, app=None, **options)
        _shared_tasks.append(task)
        for app in list(_apps):
            app.register(task)
        return task

    if len(args) == 1 and callable(args[0]) and not options:
        return decorate(args[0])
    if args:
        raise TypeError("@task takes options as keywords only, e.g. @task(name='x')")
    return decorate


def default_app() -> App:
    """Return the app built from ``settings.DJTASKS``, building it on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = App(load_settings(getattr(django_settings, "DJTASKS", None)))
    return _default


def reset_default_app() -> None:
    """Forget the default app (its settings changed); the next use builds a new one."""
    global _default
    with _default_lock:
        if _default is not None:
            _default.close()
        _default = None
