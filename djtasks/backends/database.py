"""DatabaseBackend: results in the TaskResult table of a Django database (storage layer).

``result_backend = "django-db"`` uses the ``default`` database, ``"django-db://<alias>"``
another one. Each state change is one upsert. On PostgreSQL the same transaction sends a
NOTIFY with the task id, so ``AsyncResult.get()`` sleeps until woken instead of polling.
Groups, chord counters and revoked ids are stored by the CanvasStore it builds on.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from django.db import connections
from django.utils import timezone

from djtasks import states
from djtasks.backends.base import ExecutionInfo, ResultMeta, changed, exception_to_dict
from djtasks.backends.canvas_store import REVOKED_CHANNEL, CanvasStore
from djtasks.backends.caps import capped_traceback, capped_value
from djtasks.backends.compiled import CompiledRead
from djtasks.backends.expiry import delete_expired
from djtasks.backends.in_lists import in_batches
from djtasks.backends.listener import NotificationListener
from djtasks.backends.outages import describe, retried_write
from djtasks.backends.routing_rules import read_enabled_rules
from djtasks.backends.unconfirmed import UnconfirmedWrites
from djtasks.exceptions import DjtasksError
from djtasks.models import TaskResult
from djtasks.models.columns import column as column_of
from djtasks.utils.route_rules import RouteRule

T = TypeVar("T")
RESULTS_CHANNEL = "djtasks_results"
#: The longest state a results NOTIFY carries (PostgreSQL refuses payloads over 8,000
#: bytes; every listening client receives every one, so they stay small).
NOTIFY_META_BYTES = 1000
_UPSERT_NOTIFY_SQL: dict[tuple, str] = {}
_ALWAYS_UPDATED = ("status", "result", "traceback", "date_done")
# The columns of a ResultMeta, in the order of its fields after task_id.
_META_COLUMNS = ("status", "result", "traceback", "date_done", "task_name", "retries", "worker",
                 "parent_id", "root_id", "group_id", "children", "queue", "args", "kwargs")
# One result by id: every AsyncResult.get() reads it at least twice (compiled.py says why).
_META_BY_ID = CompiledRead(
    lambda task_id: TaskResult.objects.filter(task_id=task_id).order_by().values_list(*_META_COLUMNS)[:1])


class DatabaseBackend(CanvasStore):
    supports_native_wait = False  # True per instance on PostgreSQL
    supports_chord_counter: ClassVar[bool] = True
    supports_routing_rules: ClassVar[bool] = True

    def __init__(self, alias: str = "default") -> None:
        if alias not in connections.settings:
            raise ValueError(f"result_backend: no database alias {alias!r} in DATABASES")
        self.alias = alias
        self.is_postgres = connections[alias].vendor == "postgresql"
        self.supports_native_wait = self.is_postgres
        #: False: result upserts commit without waiting for the WAL flush (PostgreSQL).
        self.synchronous_commit = True
        #: result_max_size: what a stored value, exception or traceback may take.
        self.max_size: int | None = 65536
        # psycopg connections are not to be shared by threads waiting at once: one each.
        self._local = threading.local()

    @classmethod
    def from_url(cls, url: str) -> DatabaseBackend:
        """``django-db`` is the default database; ``django-db://<alias>`` names another."""
        return cls(urlsplit(url).hostname or "default")

    def apply_settings(self, settings: Mapping[str, Any]) -> None:
        self.synchronous_commit = bool(settings["result_synchronous_commit"])
        self.max_size = settings["result_max_size"]

    def read_routing_rules(self) -> tuple[RouteRule, ...]:
        """The enabled RoutingRule rows, of the database that router.db_for_read names."""
        return read_enabled_rules()

    def store(self, task_id: str, status: str, result: Any = None, *, traceback: str = "",
              info: ExecutionInfo | None = None, confirm: bool = True) -> None:
        # A ready state is final: a RETRY or STARTED stored late (the retried run may finish
        # before the run that sent it has stored RETRY) must not replace it.
        guarded = status not in states.READY_STATES
        if confirm or not self.is_postgres or connections[self.alias].in_atomic_block:
            self.confirm_writes()  # in the order they were made
            self._store(task_id, status, result, traceback, info, guarded)
            return
        sql, params = self._upsert(task_id, status, result, traceback, info, guarded)

        def unrecorded(error: Exception) -> None:
            failure = DjtasksError(f"the worker could not run or record the task: {describe(error)}")
            self._store(task_id, states.FAILURE, exception_to_dict(failure), "", info, False)

        self._unconfirmed().send(sql, params, label=task_id, again=lambda: self._execute(sql, params),
                                 unrecorded=unrecorded)

    def confirm_writes(self, wait: bool = True) -> None:
        writes = getattr(self._local, "unconfirmed", None)
        if writes is not None:
            writes.confirm(wait)

    @property
    def unconfirmed_writes(self) -> bool:
        writes = getattr(self._local, "unconfirmed", None)
        return writes is not None and writes.pending

    def _unconfirmed(self) -> UnconfirmedWrites:
        return self._own("unconfirmed", lambda: UnconfirmedWrites(self.alias))

    def _own(self, name: str, make: Callable[[], T]) -> T:
        """This thread's ``name`` helper (a connection of its own), made on first use."""
        helper = getattr(self._local, name, None)
        if helper is None:
            helper = make()
            setattr(self._local, name, helper)
        return helper

    def fail_unless_ready(self, task_id: str, error: Any) -> None:
        self.confirm_writes()
        self._store(task_id, states.FAILURE, error, "", None, guarded=True)  # one statement

    def _store(self, task_id: str, status: str, result: Any, traceback: str,
               info: ExecutionInfo | None, guarded: bool) -> None:
        self._execute(*self._upsert(task_id, status, result, traceback, info, guarded))

    @retried_write
    def _execute(self, sql: str, params: list) -> None:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, params)

    def _upsert(self, task_id: str, status: str, result: Any, traceback: str,
                info: ExecutionInfo | None, guarded: bool) -> tuple[str, list]:
        """Return the one statement that stores this state, and its parameters."""
        now = timezone.now()
        result = capped_value(result, self.max_size)
        traceback = capped_traceback(traceback, self.max_size)
        row = TaskResult(task_id=task_id, status=status, result=result, traceback=traceback,
                         date_created=now, date_done=now if status in states.READY_STATES else None)
        update = list(_ALWAYS_UPDATED)
        if status == states.STARTED:
            row.date_started = now
            update.append("date_started")
        if info is not None:
            row.task_name, row.worker, row.queue = info.task_name, info.worker, info.queue
            row.retries = info.retries
            row.parent_id, row.root_id = info.parent_id or "", info.root_id or ""
            row.group_id = info.group_id or ""
            row.task_args, row.task_kwargs = info.args_repr, info.kwargs_repr
            row.children = list(info.children)
            update += ["task_name", "worker", "queue", "retries", "parent_id", "root_id",
                       "group_id", "task_args", "task_kwargs", "children"]
            if info.args is not None:
                row.args, row.kwargs = info.args, info.kwargs
                update += ["args", "kwargs"]
            update += _timings(row, info)
        # The hot path of every worker: one autocommit statement, which on PostgreSQL also
        # NOTIFYs the id, instead of BEGIN, upsert, (NOTIFY,) COMMIT as the ORM's
        # bulk_create would send. The SQL is built from the model's own fields, once.
        return self._upsert_statement(row, tuple(update), guarded, notify=self.is_postgres)

    def _upsert_statement(self, row: TaskResult, update: tuple[str, ...], guarded: bool,
                          notify: bool) -> tuple[str, list]:
        connection = connections[self.alias]
        fields = _insert_fields()
        values = [field.get_db_prep_save(getattr(row, field.attname), connection) for field in fields]
        wait_for_disk = self.synchronous_commit or not notify
        key = (connection.vendor, update, guarded, notify, wait_for_disk)
        sql = _UPSERT_NOTIFY_SQL.get(key)
        if sql is None:
            if notify:
                sql = upsert_notify_sql(connection, fields, update, guarded, wait_for_disk)
            else:
                sql = upsert_sql(connection, fields, update, guarded)
            _UPSERT_NOTIFY_SQL[key] = sql
        return sql, [*values, RESULTS_CHANNEL] if notify else values

    def get_meta(self, task_id: str) -> ResultMeta:
        rows = _META_BY_ID.rows(self.alias, task_id)
        return _meta_from_row(task_id, rows[0]) if rows else ResultMeta(task_id)

    def get_many(self, task_ids: Sequence[str]) -> dict[str, ResultMeta]:
        """Read the ids in one query (one per 10,000); the dict follows the order of ``task_ids``."""
        found: dict[str, ResultMeta] = {}
        for batch in in_batches(task_ids):
            rows = (TaskResult.objects.using(self.alias).filter(task_id__in=batch).order_by()
                    .values_list("task_id", *_META_COLUMNS))
            found.update((task_id, _meta_from_row(task_id, row)) for task_id, *row in rows)
        return {task_id: found[task_id] if task_id in found else ResultMeta(task_id) for task_id in task_ids}

    def forget(self, task_id: str) -> None:
        TaskResult.objects.using(self.alias).filter(task_id=task_id).delete()

    def cleanup(self, before: datetime, now: datetime) -> dict[str, int]:
        return delete_expired(self.alias, before, now)

    def wait(self, task_id: str, timeout: float | None = None, interval: float = 0.5) -> ResultMeta:
        if not self.is_postgres:
            return super().wait(task_id, timeout, interval)

        def ready_told(payload: str) -> ResultMeta | None:
            meta = meta_from_payload(task_id, payload)
            return meta if meta is not None and meta.ready else None

        return self.listener().wait_until(
            lambda: self._ready_meta(task_id), timeout=timeout, interval=interval,
            timeout_message=f"task {task_id} not ready after {timeout} s",
            wakes=lambda payload: _about(task_id, payload), answer=ready_told,
        )

    def wait_for_change(self, task_id: str, seen: ResultMeta | None, timeout: float | None = None,
                        interval: float = 0.5) -> ResultMeta:
        if not self.is_postgres:
            return super().wait_for_change(task_id, seen, timeout, interval)
        return self.listener().wait_until(
            lambda: _changed_meta(self.get_meta(task_id), seen), timeout=timeout, interval=interval,
            timeout_message=f"task {task_id} did not change state within {timeout} s",
            wakes=lambda payload: _about(task_id, payload),
        )

    def revocations_changed(self) -> bool | None:
        if not self.is_postgres:
            return None
        return self._own("revocations", lambda: NotificationListener(self.alias, REVOKED_CHANNEL)).poll()

    def listener(self) -> NotificationListener:
        """Return this process's LISTEN connection on the results channel (made on first use)."""
        return self._own("listener", lambda: NotificationListener(self.alias, RESULTS_CHANNEL))

    def close(self) -> None:
        for name in ("unconfirmed", "listener", "revocations"):  # writes first: they confirm
            helper = getattr(self._local, name, None)
            if helper is not None:
                helper.close()
                setattr(self._local, name, None)

    def _ready_meta(self, task_id: str) -> ResultMeta | None:
        meta = self.get_meta(task_id)
        return meta if meta.ready else None


def _timings(row: TaskResult, info: ExecutionInfo) -> list[str]:
    # The worker's timings travel in the same upsert as the state: no query of their own.
    update = []
    if info.received is not None:
        row.date_received = info.received
        update.append("date_received")
    if info.started is not None and row.date_started is None:
        row.date_started = info.started
        update.append("date_started")
    if info.runtime is not None:
        row.runtime = info.runtime
        update.append("runtime")
    return update


def _about(task_id: str, payload: str) -> bool:
    """Whether a results NOTIFY is about ``task_id`` (the others wake other waiters)."""
    return payload == task_id or meta_from_payload(task_id, payload) is not None


def _changed_meta(meta: ResultMeta, seen: ResultMeta | None) -> ResultMeta | None:
    return meta if changed(meta, seen) else None


def _meta_from_row(task_id: str, row: Sequence[Any]) -> ResultMeta:
    values = dict(zip(_META_COLUMNS, row, strict=True))
    values["children"] = tuple(values["children"] or ())
    return ResultMeta(task_id, **values)


def _insert_fields() -> list:
    return [field for field in TaskResult._meta.concrete_fields if not field.primary_key]


def upsert_notify_sql(connection: Any, fields: list, update: tuple[str, ...],
                      guarded: bool = False, wait_for_disk: bool = True) -> str:
    """``INSERT ... ON CONFLICT (task_id) DO UPDATE ... RETURNING`` feeding ``pg_notify``.

    The NOTIFY carries the stored state itself (``meta_from_payload`` reads it), so that a
    waiting ``get()`` needs no query of its own once woken; a state too long for that
    (over NOTIFY_META_BYTES) carries only the task id, and the waiter reads the row.

    Without ``wait_for_disk`` the statement also sets ``synchronous_commit`` off for its own
    transaction (``set_config(..., true)`` is SET LOCAL), so its autocommit returns before
    the WAL reaches the disk. Nothing else of the connection's changes.
    """
    quote = connection.ops.quote_name
    upsert = upsert_sql(connection, fields, update, guarded)
    key = quote(TaskResult._meta.get_field("task_id").column)
    returned = ", ".join(quote(column_of(TaskResult, name)) for name in ("task_id", *_META_COLUMNS))
    lazy = "" if wait_for_disk else ", set_config('synchronous_commit', 'off', true)"
    return (f"WITH stored AS ({upsert} RETURNING {returned}), "  # noqa: S608 - names only
            f"told AS (SELECT {key}, json_build_array({returned})::text AS meta FROM stored) "
            f"SELECT pg_notify(%s, CASE WHEN octet_length(meta) <= {NOTIFY_META_BYTES} "
            f"THEN meta ELSE {key} END){lazy} FROM told")


def meta_from_payload(task_id: str, payload: str) -> ResultMeta | None:
    """Return the state of ``task_id`` a results NOTIFY carries, or None if it is not that.

    The payload is the task id alone or ``[task_id, *_META_COLUMNS]`` as JSON.
    """
    if not payload.startswith("["):
        return None
    try:
        told = json.loads(payload)
    except ValueError:
        return None
    if told[0] != task_id:
        return None
    meta = _meta_from_row(task_id, told[1:])
    if meta.date_done is None:
        return meta
    # JSON has the date as text.
    return replace(meta, date_done=datetime.fromisoformat(str(meta.date_done)))


def upsert_sql(connection: Any, fields: list, update: tuple[str, ...], guarded: bool = False) -> str:
    """``INSERT ... ON CONFLICT (task_id) DO UPDATE``; ``guarded``: never over a ready state."""
    quote = connection.ops.quote_name
    table = quote(TaskResult._meta.db_table)
    key = quote(TaskResult._meta.get_field("task_id").column)
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    changes = ", ".join(
        f"{quote(column)} = EXCLUDED.{quote(column)}"
        for column in (column_of(TaskResult, name) for name in update)
    )
    guard = ""
    if guarded:
        # The ready states are this module's constants, not input.
        ready = ", ".join(f"'{state}'" for state in sorted(states.READY_STATES))
        guard = f" WHERE {table}.{quote(TaskResult._meta.get_field('status').column)} NOT IN ({ready})"
    # Only quoted names from the model's metadata are formatted in; every value is a parameter.
    return (f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "  # noqa: S608
            f"ON CONFLICT ({key}) DO UPDATE SET {changes}{guard}")
