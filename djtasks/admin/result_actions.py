"""What the task result console does: terminate with a signal, retry with a link back (edge layer).

Both go through the client a user calls: ``app.control.revoke(terminate=True, signal=...)``
as ``result.revoke(terminate=True)`` does, and ``app.send_task``.

Retry links back by writing the new id's PENDING row, with ``retry_of``, before the task
is sent. The result backend's later upserts name the columns they change and ``retry_of``
is never one of them, so the link survives every state the worker stores; nothing new has
to travel in the message, and a Celery worker fed the retry keeps it too (a header would
need both ends to know it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from djtasks import protocol, states
from djtasks.admin.actions import ActionRefused
from djtasks.application import App
from djtasks.exceptions import OperationalError
from djtasks.models import TaskResult
from djtasks.task import is_sensitive

#: How long a retry still running keeps another retry of the same task from being sent: a
#: double click is refused, while a retry whose message was lost does not block for ever.
RETRY_GUARD = timedelta(minutes=1)

#: The signals the terminate form offers (``revoke(signal=...)`` takes any name or number).
TERMINATE_SIGNALS = ("SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGHUP")


class TerminateForm(forms.Form):
    """The signal that stops the running task."""

    signal = forms.ChoiceField(
        choices=[(name, name) for name in TERMINATE_SIGNALS], initial="SIGTERM",
        help_text="Only a prefork worker can stop a running task. Its processes ignore "
                  "SIGTERM and SIGINT, so it sends SIGKILL for those; SIGUSR1 raises "
                  "SoftTimeLimitExceeded inside the task. The task ends REVOKED.")


def terminate(app: App, row: TaskResult, signal: str) -> str:
    """Revoke ``row``'s task and stop it where it runs with ``signal``; return what was done."""
    if signal not in TERMINATE_SIGNALS:  # the form checked; a caller in code may not have
        raise ActionRefused(f"signal: expected one of {', '.join(TERMINATE_SIGNALS)}, got {signal!r}")
    try:
        app.control.revoke(row.task_id, terminate=True, signal=signal)
    except (OperationalError, BrokerError) as exc:  # the broker is away: say so, not a 500
        raise ActionRefused(f"Could not ask the workers to terminate {row.task_id}: {exc}") from exc
    return f"Revoked task {row.task_id} and asked the workers to terminate it with {signal}."


def send_again(app: App, row: TaskResult) -> str:
    """Send ``row``'s task again with its stored arguments under a new id; return the id.

    The new result's row is written first, PENDING with ``retry_of``, beside ``row`` (where
    the console reads results); if publishing fails it is removed again.
    """
    if is_sensitive(app.tasks.get(row.task_name)):
        raise ActionRefused(f"Cannot send {row.task_id} again: {row.task_name} is a sensitive "
                            "task, whose arguments are never stored.")
    if row.args is None and row.kwargs is None:
        raise ActionRefused(f"Cannot send {row.task_id} again: its arguments were not stored "
                            "(set result_extended to keep them).")
    rows = TaskResult.objects.using(row._state.db or "default")
    recent = timezone.now() - RETRY_GUARD
    pending = (rows.filter(retry_of=row.task_id, date_created__gte=recent)
               .exclude(status__in=states.READY_STATES).values_list("task_id", flat=True).first())
    if pending:  # a double click, or two admins at once: one retry is enough
        raise ActionRefused(f"{row.task_id} was sent again a moment ago as {pending}, which has "
                            "not finished yet.")
    new_id = protocol.new_task_id()
    rows.create(task_id=new_id, task_name=row.task_name, status=states.PENDING, queue=row.queue,
                task_args=row.task_args, task_kwargs=row.task_kwargs, retry_of=row.task_id)
    options: dict[str, Any] = {"queue": row.queue} if row.queue else {}
    try:
        app.send_task(row.task_name, args=row.args or [], kwargs=row.kwargs or {},
                      task_id=new_id, **options)
    except Exception as exc:
        rows.filter(task_id=new_id).delete()
        if isinstance(exc, (OperationalError, BrokerError)):  # the broker is away: not a 500
            raise ActionRefused(f"Could not send {row.task_id} again: {exc}") from exc
        raise
    return new_id
