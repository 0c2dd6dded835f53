"""The settings table, and how DJTASKS and the environment become one Settings (pure layer).

Every key is Celery's setting name in lower case. Each is declared once here with its type
and default; a key that is not in the table is an error, never silently ignored.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import environ
from django.utils.module_loading import import_string

from djtasks.exceptions import ImproperlyConfigured

ENV_PREFIX = "DJTASKS_"
CENSORED = "********"
#: A word of a setting's name that marks its value secret: ``access_key_id``, ``X-Api-Key``,
#: ``db_pass``, ``authToken``. A word starting with one of these counts (``passwd``, ``keys``).
_SECRET_WORD_RE = re.compile(r"^(pass|secret|token|key|apikey|auth|signature|credential|private)")
#: Names made of secret-looking words that are addresses, not secrets, and that an operator
#: needs to read.
_NOT_SECRET_NAMES = frozenset({"routing_key", "task_default_routing_key", "global_keyprefix"})
_NAME_WORD_RE = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


@dataclass(frozen=True)
class Option:
    key: str
    type: type | tuple[type, ...]
    default: Any
    help: str
    env: str = "str"  # which django-environ reader parses DJTASKS_<KEY>
    nullable: bool = False


_OPTIONS = (
    Option("broker_url", str, "django://", "kombu URL of the broker; django:// is the project's database"),
    Option("broker_connection_timeout", (int, float), 4.0, "seconds to wait for a broker connection",
           "float"),
    Option("broker_pool_limit", int, 10, "connections kept in the producer pool", "int"),
    Option("broker_transport_options", dict, {}, "options passed to the kombu transport", "json"),
    Option("result_backend", str, "django-db", "where results are stored: django-db[://alias]"),
    Option("task_serializer", str, "json", "serializer of outgoing task messages"),
    Option("accept_content", list, ["json"], "content types the worker accepts", "list"),
    Option("task_default_queue", str, "celery", "queue of a task that no route names"),
    Option("task_default_exchange", str, None, "exchange of the default queue (its name)", nullable=True),
    Option("task_default_routing_key", str, None, "routing key of the default queue (its name)",
           nullable=True),
    Option("task_default_priority", int, None, "priority 0-9 of messages that set none", "int",
           nullable=True),
    Option("task_routes", (dict, list, tuple, str), None, "routes: dict, list of pairs, or callables",
           "json", nullable=True),
    Option("routing_rules_refresh", (int, float), 2.0,
           "seconds between two reads of the RoutingRule table by a process that publishes; a "
           "changed rule applies within it, and publishing in between costs no query", "float"),
    Option("task_create_missing_queues", bool, True, "declare a routed queue the first time it is used",
           "bool"),
    Option("task_acks_late", bool, False, "acknowledge after the task ran instead of before", "bool"),
    Option("task_track_started", bool, False, "store STARTED when a worker begins a task", "bool"),
    Option("task_ignore_result", bool, False, "store no result unless a task asks for it", "bool"),
    Option("task_publish_retry", bool, True, "retry publishing when the broker is unreachable", "bool"),
    Option("task_publish_retry_policy", dict,
           {"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
           "max_retries, interval_start, interval_step, interval_max of publish retries", "json"),
    Option("revoke_expires", (int, float), 86400.0,
           "seconds a revoked id is kept; a message of that task arriving later will run",
           "float"),
    Option("control_exchange", str, "celery",
           "name of the remote-control mailbox (exchange <name>.pidbox); Celery's default, so "
           "celery inspect/control reach djtasks workers"),
    Option("control_queue_ttl", (int, float), 300.0,
           "seconds a control command or reply may wait in its queue (AMQP)", "float"),
    Option("control_queue_expires", (int, float), 10.0,
           "seconds an unused control or reply queue outlives its consumer (AMQP)", "float"),
    Option("worker_enable_remote_control", bool, True,
           "answer remote-control commands (inspect, control, celery's CLI, Flower); off: the "
           "worker listens on no mailbox at all", "bool"),
    Option("worker_pool_restarts", bool, False,
           "allow the pool_restart control command (replace the pool's processes, optionally "
           "reloading the modules of registered tasks)", "bool"),
    Option("worker_autoscale_keepalive", (int, float), 30.0,
           "runworker --autoscale: seconds the pool must have had more processes than it "
           "needed before it shrinks", "float"),
    Option("task_max_deliveries", int, 5,
           "acks_late: a message started this many times is not run again: it fails and is kept "
           "as a dead letter (its execution keeps killing the worker); None: no limit", "int",
           nullable=True),
    Option("result_expires", (int, float), 86400.0,
           "seconds results are kept; the daily djtasks.backend_cleanup task deletes older ones "
           "(None or 0: kept for ever, and the task is not scheduled)", "float", nullable=True),
    Option("result_synchronous_commit", bool, True,
           "PostgreSQL: a task's result write waits for its commit to reach the disk; False: "
           "it does not (synchronous_commit off for that write only), several times faster "
           "where fsync is slow, and a crash of PostgreSQL itself may lose the results of "
           "its last moments (never those of chord joins, groups or anything else)", "bool"),
    Option("task_outbox", bool, False,
           "RabbitMQ, Redis: every publish made inside transaction.atomic() is written to the "
           "outbox table in that transaction and sent after its commit (no task if it rolls "
           "back), as delay_on_commit() always does; django:// is transactional anyway", "bool"),
    Option("task_max_message_size", int, 1048576,
           "bytes a task message's body may take: a bigger one is refused by apply_async "
           "before it is sent, and by a worker before it decodes it (dead-lettered, "
           "too_large); None: no limit", "int", nullable=True),
    Option("dead_letter_max_count", int, 10000,
           "dead letters kept at most: each new one deletes those past this many newer "
           "ones; None: no limit", "int", nullable=True),
    Option("dead_letter_expires", (int, float), 30 * 86400.0,
           "seconds dead letters are kept; the daily djtasks.backend_cleanup task deletes "
           "older ones (None or 0: kept until dead_letter_max_count pushes them out)",
           "float", nullable=True),
    Option("result_max_size", int, 65536,
           "bytes of JSON a stored result, exception or traceback may take; one over it is cut "
           "and says so (a result becomes the start of its JSON text and a mark, a traceback "
           "keeps its end); None: no limit", "int", nullable=True),
    Option("result_extended", bool, False,
           "also store each task's arguments as JSON (AsyncResult.args and .kwargs); the "
           "name, worker, queue and argument reprs are always stored", "bool"),
    Option("task_always_eager", bool, False, "run tasks inline when called, never publish", "bool"),
    Option("task_eager_propagates", bool, False, "re-raise a failing eager task's exception", "bool"),
    Option("worker_concurrency", int, None, "pool size; default: the number of CPUs", "int",
           nullable=True),
    Option("worker_pool", str, "prefork", "prefork, threads or solo"),
    Option("worker_prefetch_multiplier", int, 4, "messages reserved per pool slot", "int"),
    Option("worker_consume_in_children", bool, True,
           "prefork: each child consumes from the broker itself and the parent supervises; "
           "False: the parent receives every message and feeds its children", "bool"),
    Option("worker_max_tasks_per_child", int, None,
           "prefork: replace a pool process after it ran this many tasks", "int", nullable=True),
    Option("worker_max_memory_per_child", int, None,
           "prefork: replace a pool process whose resident memory passes this many KiB after a "
           "task", "int", nullable=True),
    Option("worker_heartbeat_interval", (int, float), 2.0,
           "seconds between two worker-heartbeat events and two updates of the worker's Worker "
           "row; a worker silent for 3 intervals reads as lost", "float"),
    Option("worker_send_task_events", bool, False,
           "send task-received/started/succeeded/failed/... events (runworker -E)", "bool"),
    Option("worker_send_worker_events", bool, True,
           "send worker-online/heartbeat/offline events (False: none, not even on -E)", "bool"),
    Option("worker_event_buffer", int, 10000,
           "events a worker keeps while the broker is slow to take them; past it, new ones "
           "are dropped and counted", "int"),
    Option("worker_forget_after", (int, float), 86400.0,
           "seconds after its last heartbeat that a worker's Worker row is deleted by the "
           "daily djtasks.backend_cleanup task", "float"),
    Option("task_send_sent_event", bool, False,
           "producers send a task-sent event for each task they publish", "bool"),
    Option("task_time_limit", (int, float), None,
           "hard time limit in seconds: the task's process is killed (prefork)", "float",
           nullable=True),
    Option("task_soft_time_limit", (int, float), None,
           "soft time limit in seconds: SoftTimeLimitExceeded is raised inside the task", "float",
           nullable=True),
    Option("task_reject_on_worker_lost", bool, False,
           "acks_late: requeue, not fail, a task whose process died", "bool"),
    Option("task_acks_on_failure_or_timeout", bool, True,
           "acks_late: acknowledge a failed or timed-out task (False: reject it, a timed-out one "
           "back to its queue)", "bool"),
    Option("timezone", str, "UTC", "time zone of crontab schedules and of displayed times"),
    Option("task_annotations", object, None,
           "task options set from settings: a dict by task name, '*' or a glob pattern, a "
           "callable or object with annotate(task), a dotted path to one, or a list of those",
           "json", nullable=True),
    Option("beat_schedule", dict, {}, "periodic tasks: name -> {task, schedule, args, kwargs, options}",
           "json"),
    Option("beat_scheduler", str, "djtasks.beat.scheduler.DatabaseScheduler",
           "dotted path of the scheduler class runbeat uses"),
    Option("beat_max_loop_interval", (int, float), 5.0,
           "longest sleep of beat between two looks at the schedule (database changes show "
           "within it)", "float"),
    Option("beat_lease_timeout", (int, float), 15.0,
           "seconds a beat's leadership lasts unless renewed; a dead leader is replaced after it",
           "float"),
    Option("enable_utc", bool, True, "message times are in UTC", "bool"),
    Option("database_retry_timeout", (int, float), 300.0,
           "seconds runworker and runbeat wait out a database that keeps failing (locked, "
           "restarted, unreachable), retrying with backoff, before they stop with an error; "
           "None: retry for ever", "float", nullable=True),
)
OPTIONS: Mapping[str, Option] = MappingProxyType({o.key: o for o in _OPTIONS})


class Settings(Mapping[str, Any]):
    """One resolved configuration: defaults, overridden by DJTASKS, overridden by the environment."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = MappingProxyType(dict(values))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):  # copy and pickle probe for these before __init__ ran
            raise AttributeError(key)
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(unknown_key_message(key)) from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __reduce__(self) -> tuple:
        return (Settings, (dict(self._values),))

    def using(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (and checked like any other value)."""
        return Settings({**self._values, **validate(changes)})

    def censored(self) -> dict[str, Any]:
        """Return the settings as a dict that is safe to print or log."""
        return {key: censor(key, value) for key, value in self._values.items()}


def load(configured: Mapping[str, Any] | None, environ_: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from a DJTASKS dict and the environment (``DJTASKS_<KEY>``)."""
    if configured is None:
        configured = {}
    if not isinstance(configured, Mapping):
        raise ImproperlyConfigured(
            f"DJTASKS must be a dict of settings, got {type(configured).__name__}"
        )
    # Copies: a caller mutating its settings must not change the table for every later App.
    values = {key: copy.deepcopy(option.default) for key, option in OPTIONS.items()}
    values.update(validate(configured))
    values.update(read_environment(os.environ if environ_ is None else environ_))
    return Settings(values)


#: Settings that hold a URL with a password kombu or Django must parse.
URL_SETTINGS = frozenset({"broker_url", "result_backend"})


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check each key is known and each value has its declared type."""
    checked: dict[str, Any] = {}
    for key, value in values.items():
        option = OPTIONS.get(key)
        if option is None:
            raise ImproperlyConfigured(unknown_key_message(key))
        if value is None and option.nullable:
            checked[key] = None
            continue
        if isinstance(value, bool) and option.type in (int, float, (int, float)):
            raise ImproperlyConfigured(f"DJTASKS[{key!r}]: expected a number, got {value!r}")
        if option.type is list and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, option.type) and not _callable_route(option, value):
            raise ImproperlyConfigured(
                f"DJTASKS[{key!r}]: expected {_type_name(option.type)}, got "
                f"{type(value).__name__} {censor(key, value)!r}"
            )
        if key in URL_SETTINGS and isinstance(value, str):
            problem = unescaped_password_problem(value)
            if problem:
                raise ImproperlyConfigured(f"DJTASKS[{key!r}]: {problem}")
        checked[key] = value
    return checked


def read_environment(environ_: Mapping[str, str]) -> dict[str, Any]:
    """Read ``DJTASKS_<KEY>`` variables, typed by the table through django-environ."""
    reader = environ.Env()
    reader.ENVIRON = environ_
    found = {}
    for name in environ_:
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        option = OPTIONS.get(key)
        if option is None:
            # Other DJTASKS_* variables (test switches, say) are not settings; only a near
            # miss of a real key is worth stopping for, since it is almost surely a typo.
            if difflib.get_close_matches(key, OPTIONS, n=1, cutoff=0.85):
                raise ImproperlyConfigured(f"environment variable {name}: " + unknown_key_message(key))
            continue
        found[key] = _parse_environment_value(reader, option, name, environ_[name])
    return validate(found)


_BOOL_WORDS = frozenset({"true", "false", "1", "0", "yes", "no", "on", "off", "y", "n"})


def _parse_environment_value(reader: environ.Env, option: Option, name: str, raw: str) -> Any:
    if option.env == "bool" and raw.strip().lower() not in _BOOL_WORDS:
        # django-environ reads any unknown word as False; a typo must not silently disable.
        raise ImproperlyConfigured(f"environment variable {name}: expected a boolean, got {raw!r}")
    parse: Callable[..., Any] = getattr(reader, option.env)
    try:
        value = parse(name)
    except (ValueError, TypeError) as exc:
        # JSON values may hold credentials: describe the problem, never echo the value.
        shown = "invalid JSON" if option.env == "json" else repr(censor(option.key, raw))
        raise ImproperlyConfigured(
            f"environment variable {name}: expected {_type_name(option.type)}, got {shown}"
        ) from exc
    if option.env == "list":
        value = [item.strip() for item in value if item.strip()]
    return value


def unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, OPTIONS, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown djtasks setting {key!r}{hint}"


def is_secret_name(key: str) -> bool:
    """Whether a setting or option called ``key`` holds a secret, judged by the words of its name."""
    if key.lower() in _NOT_SECRET_NAMES:
        return False
    return any(_SECRET_WORD_RE.match(word.lower()) for word in _NAME_WORD_RE.findall(key))


def censor(key: str, value: Any) -> Any:
    """Hide secrets: values of secret-named keys, and passwords inside URLs."""
    if is_secret_name(key):
        return CENSORED if value else value
    if isinstance(value, str) and "://" in value:
        return censor_url(value)
    if isinstance(value, Mapping):
        return {k: censor(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(censor(key, item) for item in value)
    return value


#: ``scheme://user:`` and all up to the last ``@``: the password when ``urlsplit`` cannot find
#: it (one holding an unescaped ``/``, ``?``, ``#`` or ``@``, or a URL it refuses).
_PASSWORD_IN_URL_RE = re.compile(r"(://[^:/@;]*:).*@")


def censor_url(url: str) -> str:
    """Replace the password of ``scheme://user:password@host`` with asterisks.

    kombu's failover form ``amqp://u:a@h1;amqp://u:b@h2`` has one password per part.
    """
    if ";" in url:
        return ";".join(censor_url(part) for part in url.split(";"))
    try:
        parts = urlsplit(url)
    except ValueError:
        return _PASSWORD_IN_URL_RE.sub(rf"\1{CENSORED}@", url)
    if parts.password is None:
        # No password where urlsplit looks (the host part ends at the first "/", "?" or
        # "#"); one holding such a character still sits before the last "@".
        return _PASSWORD_IN_URL_RE.sub(rf"\1{CENSORED}@", url) if "@" not in parts.netloc else url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{CENSORED}@{netloc}"))


def unescaped_password_problem(url: str) -> str | None:
    """Name the character that cuts a URL's password short, as kombu and urllib read it.

    ``amqp://user:pa/ss@host//`` reads as host ``user`` with the path ``/ss@host//``: the
    connection goes elsewhere, and the password ends up in error messages as a host name.
    """
    for part in url.split(";"):
        try:
            split = urlsplit(part)
            if "@" in split.netloc or not _PASSWORD_IN_URL_RE.search(part):
                continue
            if split.port is not None:  # "host:port/...": the "@" is later, in a path or query
                continue
        except ValueError:  # what urlsplit read as host:port is user:password
            pass
        password = part.split("://", 1)[1].split(":", 1)[1].rsplit("@", 1)[0]
        for char in "/?#":
            if char in password:
                return (f"the password in {censor_url(part)} holds an unescaped {char!r}: "
                        f"percent-encode it (urllib.parse.quote(password, safe=''))")
    return None


def _callable_route(option: Option, value: Any) -> bool:
    # task_routes may be a single router callable, as in Celery.
    return option.key == "task_routes" and callable(value)


def _type_name(expected: type | tuple[type, ...]) -> str:
    if isinstance(expected, tuple):
        return " or ".join(t.__name__ for t in expected)
    return expected.__name__


#: The base class a setting's class must subclass.
Base = TypeVar("Base")


def import_class(path: str, base: type[Base], setting: str) -> type[Base]:
    """Import the class a setting names by dotted path; it must subclass ``base``."""
    try:
        found = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{setting}: cannot import {path!r}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ImproperlyConfigured(f"{setting}: expected a {base.__name__} subclass, got {found!r}")
    return found
