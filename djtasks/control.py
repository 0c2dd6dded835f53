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

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

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

    def inspect(self, destination: Sequence[str] | None = None, timeout: float = 1.0) -> Inspect:
        """Return questions to the workers whose answers are merged by hostname."""
        return Inspect(self, destination, timeout)

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

    def __init__(self, control: Control, destination: Sequence[str] | None, timeout: float) -> None:
        self.control = control
        self.destination = destination
        self.timeout = timeout

    def _ask(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        replies = self.control.broadcast(command, arguments, destination=self.destination,
                                         reply=True, timeout=self.timeout) or []
        return {host: answer for one in replies for host, answer in one.items()}

    def ping(self) -> dict[str, Any]:
        return self._ask("ping")

    def registered(self) -> dict[str, Any]:
        """Each worker's task names."""
        return self._ask("registered")

    def active_queues(self) -> dict[str, Any]:
        """The queues each worker consumes (a list of ``{name, exchange, routing_key}``)."""
        return self._ask("active_queues")


def describe(replies: Replies) -> list[str]:
    """Return one line per answer, ``host: OK text`` or ``host: ERROR text``, by hostname.

    A list answer (``registered``) prints as ``host: OK`` then one ``  * item`` per entry.
    """
    answers = sorted(((host, answer) for one in replies for host, answer in one.items()),
                     key=lambda pair: pair[0])
    lines = []
    for host, answer in answers:
        if isinstance(answer, dict) and "error" in answer:
            lines.append(f"{host}: ERROR {answer['error']}")
        elif isinstance(answer, dict) and "ok" in answer:
            lines.append(f"{host}: OK {answer['ok']}")
        elif isinstance(answer, list):
            lines.append(f"{host}: OK")
            lines.extend(f"  * {item}" for item in answer)
        else:
            lines.append(f"{host}: OK {answer}")
    return lines


def _task_ids(task_id: object) -> list[str]:
    ids = [task_id] if isinstance(task_id, str) or not isinstance(task_id, Iterable) else list(task_id)
    if not all(isinstance(one, str) for one in ids):
        raise TypeError(f"revoke: expected a task id or a sequence of task ids, got {task_id!r}")
    return ids
