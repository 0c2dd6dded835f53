"""ResultBackend: the interface every result store implements, and exception encoding (storage layer).

Exceptions are stored as data, ``{"exc_type", "exc_module", "exc_message"}``, never pickled:
reading a result back re-creates the original type only when it can be imported and is an
exception class, and otherwise gives a RemoteTaskError with the type name and message.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from djtasks import states
from djtasks.exceptions import RemoteTaskError
from djtasks.exceptions import TimeoutError as ResultTimeoutError
from djtasks.utils.route_rules import RouteRule

#: Polling starts this fast, for the common case of a task that is already nearly done.
FIRST_POLL_INTERVAL = 0.005


@dataclass(frozen=True)
class ResultMeta:
    """A snapshot of one task's stored state."""

    task_id: str
    status: str = states.PENDING
    result: Any = None
    traceback: str = ""
    date_done: datetime | None = None
    task_name: str = ""
    retries: int = 0
    worker: str = ""
    parent_id: str = ""
    root_id: str = ""
    group_id: str = ""
    children: tuple[str, ...] = ()
    queue: str = ""
    args: Any = None
    kwargs: Any = None

    @property
    def ready(self) -> bool:
        return self.status in states.READY_STATES


@dataclass(frozen=True)
class ExecutionInfo:
    """What the executor knows of a task when it stores its state."""

    task_name: str = ""
    worker: str = ""
    queue: str = ""
    retries: int = 0
    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None
    args_repr: str = ""
    kwargs_repr: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    children: tuple[str, ...] = ()
    #: The arguments themselves, given only with the result_extended setting.
    args: list | None = None
    kwargs: dict | None = None
    #: Timings: when the worker received the message, when the task started, how long it ran.
    received: datetime | None = None
    started: datetime | None = None
    runtime: float | None = None


@dataclass(frozen=True)
class ChordJoin:
    """What the one caller that completes or fails a chord needs to call its body or errback."""

    group_id: str
    body: Mapping[str, Any]
    member_ids: tuple[str, ...]
    results: list[Any] | None = None
    failed_task_id: str | None = None
    error: Mapping[str, Any] | None = None


class ResultBackend(ABC):
    """Store and read back task states. Implementations declare what they support."""

    #: True when ``wait`` is woken by the store itself instead of polling (may be per instance).
    supports_native_wait: bool = False
    #: True when the backend counts chord parts itself (``start_chord``, ``chord_part_done``).
    supports_chord_counter: ClassVar[bool] = False
    #: True when the store holds routing rules (``read_routing_rules``).
    supports_routing_rules: ClassVar[bool] = False

    @classmethod
    def from_url(cls, url: str) -> ResultBackend:
        """Build the backend that ``result_backend = url`` names."""
        return cls()

    def apply_settings(self, settings: Mapping[str, Any]) -> None:  # noqa: B027 - most read none
        """Take the settings this backend reads (the app calls it once it built the backend)."""

    @abstractmethod
    def store(self, task_id: str, status: str, result: Any = None, *, traceback: str = "",
              info: ExecutionInfo | None = None, confirm: bool = True) -> None:
        """Record ``status`` for ``task_id``; ``result`` is JSON-ready data.

        ``confirm=False``: the write may return once it has reached the store, before the
        store said it committed (``confirm_writes`` reads that). A backend that cannot
        tell the two apart waits as usual.
        """

    def confirm_writes(self, wait: bool = True) -> None:  # noqa: B027 - most never defer
        """Read what the writes made with ``confirm=False`` became; ``wait=False``: only
        the answers that have arrived. A failed one is made again or logged, not raised."""

    @property
    def unconfirmed_writes(self) -> bool:
        """Whether a write made with ``confirm=False`` has not been confirmed yet."""
        return False

    def fail_unless_ready(self, task_id: str, error: Any) -> None:
        """Record FAILURE with ``error`` for ``task_id``, unless a ready state is stored.

        For a message refused before it ran: a later, broken message that carries the id
        of a finished task must not replace that task's outcome. Backends that can should
        do this in one statement; this default reads first.
        """
        if not self.get_meta(task_id).ready:
            self.store(task_id, states.FAILURE, error)

    @abstractmethod
    def get_meta(self, task_id: str) -> ResultMeta:
        """Return the stored state of ``task_id``; PENDING when nothing is stored."""

    @abstractmethod
    def forget(self, task_id: str) -> None:
        """Delete what is stored for ``task_id``."""

    def get_many(self, task_ids: Sequence[str]) -> dict[str, ResultMeta]:
        """Return the stored state of each of ``task_ids``; PENDING for those not stored."""
        return {task_id: self.get_meta(task_id) for task_id in task_ids}

    def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Store the member ids of ``group_id``, in order."""
        raise self._unsupported("groups")

    def restore_group(self, group_id: str) -> list[str] | None:
        """Return the member ids stored for ``group_id``; None when nothing is stored."""
        raise self._unsupported("groups")

    def forget_group(self, group_id: str) -> None:
        """Delete what is stored for ``group_id`` (not its members' results)."""
        raise self._unsupported("groups")

    def start_chord(self, group_id: str, member_ids: Sequence[str], body: Mapping[str, Any]) -> None:
        """Store a counter of ``len(member_ids)`` parts and ``body``, and save the group."""
        raise self._unsupported("chord counters")

    def chord_part_done(self, group_id: str, task_id: str, *,
                        failed: bool) -> contextlib.AbstractContextManager[ChordJoin | None]:
        """Count ``task_id`` as finished; give a ChordJoin to the one caller that must act.

        The count is kept only if the with-block exits normally: the caller publishes the
        body inside it, so a crash before the publish leaves the part to be counted again.
        """
        raise self._unsupported("chord counters")

    def revoke(self, task_ids: Sequence[str], expires: datetime | None) -> None:
        """Record ``task_ids`` as revoked, until ``expires`` when it is given."""
        raise self._unsupported("revoked ids")

    def revoked(self, task_ids: Sequence[str]) -> set[str]:
        """Return which of ``task_ids`` are revoked and not expired."""
        raise self._unsupported("revoked ids")

    def revoked_since(self, since: datetime | None) -> tuple[set[str], datetime | None]:
        """Return the ids revoked after ``since`` and not expired, and the newest revocation time.

        The time is ``since`` when nothing newer was found: pass it back as the next ``since``.
        """
        raise self._unsupported("revoked ids")

    def revocations_changed(self) -> bool | None:
        """Say, without waiting, whether ids may have been revoked since the last call.

        None: this store cannot tell, so a worker looks by time instead. True the first
        time, and whenever the signal itself was interrupted (nothing may be missed).
        """
        return None

    def cleanup(self, before: datetime, now: datetime) -> dict[str, int]:
        """Delete results that finished before ``before`` (``result_expires``); return counts.

        Groups, finished chord counters and expired revocations of that age go with them.
        """
        raise self._unsupported("expiring results")

    def read_routing_rules(self) -> tuple[RouteRule, ...]:
        """Return the enabled routing rules; raise when they cannot be read.

        Called at most every ``routing_rules_refresh`` seconds per process, from any thread
        that publishes, so it must be one small read that leaves the caller's transaction
        as it found it.
        """
        raise self._unsupported("routing rules")

    def _unsupported(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__} does not store {what}")

    def wait(self, task_id: str, timeout: float | None = None, interval: float = 0.5) -> ResultMeta:
        """Block until ``task_id`` is ready; raise djtasks' TimeoutError after ``timeout`` s.

        This default polls with backoff: fast at first, then every ``interval`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(FIRST_POLL_INTERVAL, interval)
        while True:
            meta = self.get_meta(task_id)
            if meta.ready:
                return meta
            pause = self._sleep_before_next_poll(task_id, deadline, pause, timeout)
            pause = min(pause * 2, interval)

    def wait_for_change(self, task_id: str, seen: ResultMeta | None, timeout: float | None = None,
                        interval: float = 0.5) -> ResultMeta:
        """Block until ``task_id``'s state or result differs from ``seen`` (None: anything stored).

        For ``AsyncResult.get(on_message=...)``, which reports every state a task goes
        through (PROGRESS updates included). This default polls, as ``wait`` does.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(FIRST_POLL_INTERVAL, interval)
        while True:
            meta = self.get_meta(task_id)
            if changed(meta, seen):
                return meta
            pause = self._sleep_before_next_poll(task_id, deadline, pause, timeout)
            pause = min(pause * 2, interval)

    def close(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Release what the backend holds open (connections, listeners)."""

    @staticmethod
    def _sleep_before_next_poll(task_id: str, deadline: float | None, pause: float,
                                timeout: float | None) -> float:
        return sleep_before_next_poll(f"task {task_id}", deadline, pause, timeout)


def sleep_before_next_poll(subject: str, deadline: float | None, pause: float,
                           timeout: float | None) -> float:
    """Sleep ``pause`` s (less if the deadline is nearer); raise TimeoutError past it."""
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ResultTimeoutError(f"{subject} not ready after {timeout} s")
        pause = min(pause, left)
    time.sleep(pause)
    return pause


def changed(meta: ResultMeta, seen: ResultMeta | None) -> bool:
    """True when ``meta`` shows another state or result than ``seen`` (or ``seen`` is None)."""
    if seen is None:
        return meta.status != states.PENDING or meta.date_done is not None
    return (meta.status, meta.result) != (seen.status, seen.result)


def exception_to_dict(exc: BaseException) -> dict[str, Any]:
    """Describe ``exc`` as JSON-ready data."""
    cls = type(exc)
    return {
        "exc_type": cls.__qualname__,
        "exc_module": cls.__module__,
        "exc_message": [_json_safe(arg) for arg in exc.args],
    }


def exception_from_dict(data: Mapping[str, Any]) -> BaseException:
    """Re-create the exception ``data`` describes, without unpickling anything."""
    type_name = str(data.get("exc_type", "Exception"))
    module_name = str(data.get("exc_module", "builtins"))
    message = data.get("exc_message", [])
    args = tuple(message) if isinstance(message, (list, tuple)) else (message,)
    cls = _importable_exception(module_name, type_name)
    if cls is not None:
        try:
            return cls(*args)
        except Exception:  # noqa: S110 - a constructor with other arguments: fall through
            pass
    text = " ".join(str(arg) for arg in args)
    return RemoteTaskError(type_name if module_name == "builtins" else f"{module_name}.{type_name}", text)


def _importable_exception(module_name: str, type_name: str) -> type[BaseException] | None:
    # Only modules of packages this process already loaded are imported: a name read from
    # the result store must not run the top level of an arbitrary module.
    if module_name not in sys.modules and module_name.partition(".")[0] not in sys.modules:
        return None
    try:
        found: Any = importlib.import_module(module_name)
        for part in type_name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError):
        return None
    # Exception only: a SystemExit or KeyboardInterrupt rebuilt in a web process would stop it.
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return None


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return repr(value)
