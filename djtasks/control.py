"""Control: the remote-control client: broadcast commands, collect replies, revoke (client layer).

Commands travel on kombu's process mailbox (``kombu.pidbox``), as Celery's do: a fanout
exchange ``<control_exchange>.pidbox`` with one queue per worker, and a reply queue per
call that the asking process reads for ``timeout`` seconds. The message layout is
kombu's, so ``celery inspect ping`` reaches djtasks workers and the reverse.

Revoked ids are also kept in the result backend, where every worker looks before it runs a
task, so a revoke reaches the workers that are running now and those started later; the
broadcast is needed only to stop a task that is already running (``terminate=True``).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from kombu.pidbox import Mailbox

if TYPE_CHECKING:
    from djtasks.application import App

#: Replies: one ``{worker hostname: answer}`` per worker that answered.
Replies = list[dict[str, Any]]


def build_mailbox(app: App) -> Mailbox:
    """Return the app's (unbound) process mailbox; the worker binds it to its connection."""
    settings = app.settings
    return Mailbox(
        settings.control_exchange, type="fanout", accept=["json"], serializer="json",
        queue_ttl=settings.control_queue_ttl, queue_expires=settings.control_queue_expires,
        reply_queue_ttl=settings.control_queue_ttl,
        reply_queue_expires=settings.control_queue_expires,
    )


class Control:
    """Commands for the workers of one app (Celery's ``app.control``)."""

    def __init__(self, app: App) -> None:
        self.app = app

    @cached_property
    def mailbox(self) -> Mailbox:
        return build_mailbox(self.app)

    def broadcast(self, command: str, arguments: dict[str, Any] | None = None,
                  destination: Sequence[str] | None = None, reply: bool = False,
                  timeout: float = 1.0, limit: int | None = None) -> Replies | None:
        """Send ``command`` to every worker, or to the hostnames in ``destination``.

        With ``reply``, wait for answers and return them: collecting stops after
        ``timeout`` seconds without a new one, or once ``limit`` answered (by default,
        as many as ``destination`` names).
        """
        if destination is not None:
            if isinstance(destination, str) or not isinstance(destination, Sequence):
                raise TypeError(f"destination: expected a list of worker hostnames, got {destination!r}")
            destination = list(destination)
        with self.app.connection() as connection:
            # A mailbox bound per call: its reply queue is this call's alone.
            mailbox = self.mailbox(connection)
            arguments = arguments or {}
            if not reply:
                if destination is None:
                    mailbox.abcast(command, arguments)
                else:
                    mailbox.cast(destination, command, arguments)
                return None
            if destination is None:
                return mailbox.multi_call(command, arguments, timeout=timeout, limit=limit)
            return mailbox.call(destination, command, arguments, timeout=timeout)

    def ping(self, destination: Sequence[str] | None = None, timeout: float = 1.0) -> Replies:
        """Ask workers to answer; each answers ``{"ok": "pong"}``."""
        return self.broadcast("ping", destination=destination, reply=True, timeout=timeout) or []

    def rate_limit(self, task_name: str, rate_limit: str | float | None,
                   destination: Sequence[str] | None = None, reply: bool = False,
                   timeout: float = 1.0) -> Replies | None:
        """Set ``task_name``'s rate limit ("10/m", ...; None or 0: none) on the workers."""
        return self.broadcast("rate_limit", {"task_name": task_name, "rate_limit": rate_limit},
                              destination=destination, reply=reply, timeout=timeout)

    def time_limit(self, task_name: str, soft: float | None = None, hard: float | None = None,
                   **where: Any) -> Replies | None:
        """Set ``task_name``'s soft and hard time limits (seconds) on the workers."""
        return self.broadcast("time_limit", {"task_name": task_name, "soft": soft, "hard": hard},
                              **where)

    def add_consumer(self, queue: str, exchange: str | None = None,
                     exchange_type: str | None = None, routing_key: str | None = None,
                     **where: Any) -> Replies | None:
        """Make the workers consume ``queue`` too, at once, without a restart."""
        return self.broadcast("add_consumer", {"queue": queue, "exchange": exchange,
                                               "exchange_type": exchange_type,
                                               "routing_key": routing_key}, **where)

    def cancel_consumer(self, queue: str, **where: Any) -> Replies | None:
        """Make the workers stop consuming ``queue``."""
        return self.broadcast("cancel_consumer", {"queue": queue}, **where)

    def pool_grow(self, n: int = 1, **where: Any) -> Replies | None:
        """Add ``n`` processes (threads) to the workers' pools."""
        return self.broadcast("pool_grow", {"n": n}, **where)

    def pool_shrink(self, n: int = 1, **where: Any) -> Replies | None:
        """Remove ``n`` processes (threads) from the workers' pools, after their task."""
        return self.broadcast("pool_shrink", {"n": n}, **where)

    def autoscale(self, max: int, min: int, **where: Any) -> Replies | None:  # noqa: A002 - Celery's names
        """Change the bounds of the workers started with ``--autoscale``."""
        return self.broadcast("autoscale", {"max": max, "min": min}, **where)

    def shutdown(self, **where: Any) -> Replies | None:
        """Shut the workers down warm: running tasks finish, reserved ones go back."""
        return self.broadcast("shutdown", **where)

    def purge(self, queues: Sequence[str] | None = None) -> dict[str, int]:
        """Delete the messages waiting in ``queues`` (default: the default queue).

        Return how many were deleted from each. Messages a worker has reserved are not
        waiting: they run, or go back to their queue when that worker stops.
        """
        names = list(queues or [self.app.settings.task_default_queue])
        with self.app.connection() as connection:
            channel = connection.default_channel
            return {name: self.app.router.queue(name)(channel).purge() or 0 for name in names}

    def inspect(self, destination: Sequence[str] | None = None, timeout: float = 1.0,
                limit: int | None = None) -> Inspect:
        """Return questions to the workers whose answers are merged by hostname.

        Each question waits up to ``timeout`` seconds for one more answer, and no longer
        once ``limit`` workers answered.
        """
        return Inspect(self, destination, timeout, limit)

    def revoke(self, task_id: str | Sequence[str], terminate: bool = False,
               signal: str = "SIGTERM", destination: Sequence[str] | None = None,
               reply: bool = False, timeout: float = 1.0) -> Replies | None:
        """Mark ``task_id`` (one id or several) revoked: a worker skips it instead of running it.

        The mark lasts ``revoke_expires`` seconds. ``terminate=True`` also stops the task
        where it is running now: its pool process gets ``signal`` (prefork processes ignore
        SIGTERM and SIGINT, so those become SIGKILL) and its state becomes REVOKED. Only
        the prefork pool can stop a running task; the others answer that they cannot.
        With ``reply`` (and ``terminate``), return the workers' answers.
        """
        ids = _task_ids(task_id)
        if not ids:
            return None
        expires = datetime.now(UTC) + timedelta(seconds=self.app.settings.revoke_expires)
        self.app.backend.revoke(ids, expires=expires)
        if not terminate:
            return None  # the store is enough: every worker looks there before a task runs
        return self.broadcast("revoke", {"task_id": ids, "terminate": True, "signal": signal},
                              destination=destination, reply=reply, timeout=timeout)


class Inspect:
    """Celery's ``app.control.inspect()``: each method returns ``{hostname: answer}``."""

    def __init__(self, control: Control, destination: Sequence[str] | None, timeout: float,
                 limit: int | None = None) -> None:
        self.control = control
        self.destination = destination
        self.timeout = timeout
        self.limit = limit

    def _ask(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        replies = self.control.broadcast(command, arguments, destination=self.destination,
                                         reply=True, timeout=self.timeout,
                                         limit=self.limit) or []
        return merged(replies)

    def ping(self) -> dict[str, Any]:
        return self._ask("ping")

    def registered(self) -> dict[str, Any]:
        """Each worker's task names."""
        return self._ask("registered")

    def active_queues(self) -> dict[str, Any]:
        """The queues each worker consumes (a list of ``{name, exchange, routing_key}``)."""
        return self._ask("active_queues")

    def active(self) -> dict[str, Any]:
        """The tasks each worker is running."""
        return self._ask("active")

    def reserved(self) -> dict[str, Any]:
        """The tasks each worker has received and not started yet."""
        return self._ask("reserved")

    def scheduled(self) -> dict[str, Any]:
        """The tasks due later (``{eta, priority, request}``) each worker holds or sees parked."""
        return self._ask("scheduled")

    def revoked(self) -> dict[str, Any]:
        """The task ids each worker knows revoked."""
        return self._ask("revoked")

    def stats(self) -> dict[str, Any]:
        """Each worker's pid, uptime, pool, broker, prefetch count, totals and resource usage."""
        return self._ask("stats")

    def conf(self) -> dict[str, Any]:
        """Each worker's settings, secrets censored."""
        return self._ask("conf")

    def query_task(self, *ids: str) -> dict[str, Any]:
        """``{id: [state, request]}`` per worker, for the ids it runs, reserves or holds."""
        return self._ask("query_task", {"ids": list(ids)})

    def report(self) -> dict[str, Any]:
        """Each worker's versions, platform and settings, as text for a bug report."""
        return self._ask("report")


def describe(replies: Replies, show_reply: bool = True) -> list[str]:
    """Return the answers as Celery's command line prints them, by hostname.

    Each answer is a ``-> host: OK`` (or ``ERROR``) line, then, with ``show_reply``, the
    answer indented: the text of ``{"ok": ...}``, one `` * item`` per entry of a list,
    or a dict as indented JSON.
    """
    answers = sorted(merged(replies).items())
    lines = []
    for host, answer in answers:
        status, body = _pretty(answer)
        lines.append(f"-> {host}: {status}")
        if show_reply and body:
            lines.append(textwrap.indent(body, "    "))
    return lines


def merged(replies: Replies) -> dict[str, Any]:
    """One ``{hostname: answer}`` dict out of the replies."""
    return {host: answer for one in replies for host, answer in one.items()}


def _pretty(answer: Any) -> tuple[str, str]:
    if isinstance(answer, dict) and "error" in answer:
        return "ERROR", str(answer["error"])
    if isinstance(answer, dict) and "ok" in answer:
        return "OK", str(answer["ok"])
    if isinstance(answer, list):
        return "OK", "\n".join(f"* {item}" for item in answer) if answer else "- empty -"
    if isinstance(answer, dict):
        return "OK", json.dumps(answer, indent=4, sort_keys=True, default=repr)
    return "OK", str(answer)


def _task_ids(task_id: object) -> list[str]:
    ids = [task_id] if isinstance(task_id, str) or not isinstance(task_id, Iterable) else list(task_id)
    if not all(isinstance(one, str) for one in ids):
        raise TypeError(f"revoke: expected a task id or a sequence of task ids, got {task_id!r}")
    return cast(list[str], ids)  # each checked above
