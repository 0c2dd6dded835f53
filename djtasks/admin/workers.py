"""Worker rows in the admin: status from the database, remote control from the page (edge layer).

Each command goes through ``djtasks.app.control``, addressed to this worker alone, and waits
a short while for its answer, which becomes the message: "ok" as a success, an error or
silence as an error. Every command sent is written to the worker's history, whatever the
answer, since the worker may have acted on it. A worker that is not online has nobody to
answer, so its commands are neither offered nor sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

import djtasks
from djtasks.admin.actions import ActionRefused, ConsoleActionsMixin, ObjectAction, log_object_action
from djtasks.admin.worker_forms import (
    AddConsumerForm,
    CancelConsumerForm,
    PoolResizeForm,
    RateLimitForm,
)
from djtasks.control import Replies, merged
from djtasks.models import Worker
from djtasks.models.workers import OFFLINE, ONLINE, WorkerQuerySet

if TYPE_CHECKING:
    from djtasks.models.workers import WorkerWithStatus

#: Seconds to wait for the worker's answer: it answers between two rounds of its loop.
REPLY_TIMEOUT = 5.0


def _control(name: str, label: str, method: str, form: type[forms.Form] | None = None,
             confirm: bool = False) -> ObjectAction:
    return ObjectAction(name, label, "control_worker", method, form=form, available="online",
                        confirm=confirm)


@admin.register(Worker)
class WorkerAdmin(ConsoleActionsMixin, admin.ModelAdmin):
    list_display = ("hostname", "status", "heartbeat_age", "pid", "pool", "concurrency",
                    "processed", "failed", "active", "software", "started")
    search_fields = ("hostname", "host")
    readonly_fields = ["remote_control", *(field.name for field in Worker._meta.fields)]
    object_actions = (
        _control("pool_grow", "Grow pool", "pool_grow_one", PoolResizeForm),
        _control("pool_shrink", "Shrink pool", "pool_shrink_one", PoolResizeForm),
        _control("add_consumer", "Add consumer", "add_consumer_one", AddConsumerForm),
        _control("cancel_consumer", "Cancel consumer", "cancel_consumer_one", CancelConsumerForm),
        _control("rate_limit", "Set rate limit", "rate_limit_one", RateLimitForm),
        _control("shutdown", "Shut down", "shutdown_one", confirm=True),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The default manager is WorkerQuerySet.as_manager(); the admin's type says QuerySet.
        return cast(WorkerQuerySet, super().get_queryset(request)).with_status()

    @admin.display(description="status", ordering="status")
    def status(self, row: WorkerWithStatus) -> str:
        return row.status

    @admin.display(description="last heartbeat (s ago)", ordering="-last_heartbeat")
    def heartbeat_age(self, row: Worker) -> str:
        return f"{row.heartbeat_age(timezone.now()):.1f}"

    @admin.display(description="remote control")
    def remote_control(self, row: Worker) -> str:
        status = row.status_at()
        if status == ONLINE:
            return "online: answers remote-control commands"
        return refusal(row, status)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the workers write their rows

    def has_change_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return False

    def online(self, row: Worker) -> bool:
        return row.status_at() == ONLINE

    def object_action_form(self, action: ObjectAction, obj: Any, data: Any) -> forms.Form | None:
        args = () if data is None else (data,)
        if action.form is CancelConsumerForm:
            return CancelConsumerForm(*args, queues=current_queues(obj))
        if action.form is RateLimitForm:
            return RateLimitForm(*args, task_names=djtasks.app.tasks.user_tasks())
        return super().object_action_form(action, obj, data)

    # -- the commands: each a method of app.control, addressed to this worker alone ----------
    def pool_grow_one(self, request: HttpRequest, row: Worker, data: dict[str, Any]) -> str:
        return command(request, row, f"Pool grow by {data['n']}", "pool_grow", data["n"])

    def pool_shrink_one(self, request: HttpRequest, row: Worker, data: dict[str, Any]) -> str:
        return command(request, row, f"Pool shrink by {data['n']}", "pool_shrink", data["n"])

    def add_consumer_one(self, request: HttpRequest, row: Worker, data: dict[str, Any]) -> str:
        return command(request, row, f"Add consumer {data['queue']}", "add_consumer", data["queue"])

    def cancel_consumer_one(self, request: HttpRequest, row: Worker, data: dict[str, Any]) -> str:
        return command(request, row, f"Cancel consumer {data['queue']}", "cancel_consumer",
                       data["queue"])

    def rate_limit_one(self, request: HttpRequest, row: Worker, data: dict[str, Any]) -> str:
        task_name, rate = data["task_name"], data["rate_limit"] or None
        return command(request, row, f"Rate limit of {task_name} to {rate or 'none'}",
                       "rate_limit", task_name, rate)

    def shutdown_one(self, request: HttpRequest, row: Worker, data: dict[str, Any]) -> str:
        return command(request, row, "Shutdown", "shutdown")


def command(request: HttpRequest, row: Worker, what: str, method: str, *args: Any) -> str:
    """Call ``app.control.<method>(*args)`` for ``row``'s worker; return its "ok" answer.

    An error answer, silence or an unreachable broker raises ActionRefused; a command that
    was sent is logged whatever came back, since the worker may have acted on it.
    """
    status = row.status_at()
    if status != ONLINE:
        raise ActionRefused(refusal(row, status))
    send = getattr(djtasks.app.control, method)
    try:
        replies: Replies | None = send(*args, destination=[row.hostname], reply=True,
                                       timeout=REPLY_TIMEOUT)
    except (BrokerError, OSError) as exc:  # nothing was sent: nothing to log
        raise ActionRefused(f"{what}: could not reach the broker ({type(exc).__name__}); "
                            "nothing was sent.") from exc
    answer = merged(replies or []).get(row.hostname)
    if answer is None:
        failure = (f"{what}: {row.hostname} did not answer within {REPLY_TIMEOUT:g} s "
                   "(busy, stopping or gone); the command may still reach it.")
    elif isinstance(answer, dict) and "error" in answer:
        failure = f"{what}: {row.hostname} answered error: {answer['error']}"
    else:
        ok = answer.get("ok", answer) if isinstance(answer, dict) else answer
        return f"{what}: {row.hostname} answered ok: {ok}"
    log_object_action(request, row, failure)
    raise ActionRefused(failure)


def refusal(row: Worker, status: str) -> str:
    """Say why a worker that is not online gets no command."""
    if status == OFFLINE:
        return f"{row.hostname} is offline (it shut down): nobody is there to answer remote control."
    return (f"{row.hostname} is lost (no heartbeat for {row.heartbeat_age():.0f} s): nobody is "
            "there to answer remote control.")


def current_queues(row: Worker) -> list[str]:
    """Return the queues the worker consumes now: its own answer, or its row's if it is silent.

    The row holds the queues the worker started with; add_consumer and cancel_consumer
    change them without a restart, so the worker is asked first.
    """
    if row.status_at() == ONLINE:
        try:
            answer = djtasks.app.control.inspect(destination=[row.hostname], timeout=REPLY_TIMEOUT
                                                 ).active_queues().get(row.hostname)
        except (BrokerError, OSError):
            answer = None
        if isinstance(answer, list):
            return [queue["name"] for queue in answer if isinstance(queue, dict) and "name" in queue]
    return list(row.queues or [])
