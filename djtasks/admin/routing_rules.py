"""RoutingRule in the admin: edit order and enabled in the list, try a task name (edge layer).

The "try a task name" box and ``manage.py djtasks route`` give the same answer: both ask
``App.explain_route``. Saving a rule whose queue no worker consumes is allowed; when the
workers answer ``active_queues``, the message after saving says so.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin, messages
from django.db import DatabaseError, router, transaction
from django.http import HttpRequest, HttpResponse

import djtasks
from djtasks.exceptions import ImproperlyConfigured
from djtasks.models import RoutingRule, Worker
from djtasks.models.workers import ONLINE

logger = logging.getLogger("djtasks.admin")

TRY_PARAM = "try_task"
#: How long saving a rule waits for one more worker to name its queues: short when no
#: worker is known to be online, longer when one is (the wait ends once all online answered).
INSPECT_TIMEOUT = 0.5
INSPECT_TIMEOUT_ONLINE = 2.0


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "pattern", "match", "queue", "priority", "order", "enabled",
                    "date_changed")
    list_editable = ("order", "enabled")
    list_filter = ("enabled", "match", "queue")
    search_fields = ("name", "pattern", "queue")
    readonly_fields = ("date_changed",)
    fieldsets = (
        (None, {"fields": ("name", "pattern", "match", "order", "enabled", "description")}),
        ("Route", {"fields": ("queue", "exchange", "exchange_type", "routing_key", "priority")}),
        ("History", {"fields": ("date_changed",)}),
    )

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        # The box's parameter is not a filter of the list: take it out before the list reads it.
        params = request.GET.copy()
        name: str = (params.pop(TRY_PARAM, None) or [""])[-1].strip()
        # A mutable copy stands in for the request's GET; django-stubs types GET as immutable.
        request.GET = params  # type: ignore[assignment]
        context = {**(extra_context or {}), "try_param": TRY_PARAM, "try_task": name}
        if name:
            context["try_lines"] = route_preview(name)
        return super().changelist_view(request, context)

    def save_model(self, request: HttpRequest, obj: RoutingRule, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.queue and (not change or "queue" in form.changed_data):
            # After the commit: on django:// the question to the workers is a row that
            # they cannot see while the admin's transaction holds it.
            transaction.on_commit(lambda: self.warn_if_unconsumed(request, obj.queue),
                                  using=router.db_for_write(RoutingRule))

    def warn_if_unconsumed(self, request: HttpRequest, queue: str) -> None:
        warning = unconsumed_queue_warning(queue)
        if warning:
            self.message_user(request, warning, messages.WARNING)


def route_preview(name: str) -> list[str]:
    """Return the lines ``djtasks route <name>`` prints."""
    try:
        return djtasks.app.explain_route(name).lines()
    except ImproperlyConfigured as exc:
        return [f"cannot route {name!r}: {exc}"]


def unconsumed_queue_warning(queue: str) -> str | None:
    """Say that no running worker consumes ``queue``, when the workers tell their queues.

    The answers to ``active_queues`` are the truth for the workers that gave one; an online
    worker that did not answer in time (busy, or a slow broker) counts with the queues its
    last heartbeat stored, so a late answer does not read as a missing consumer.
    """
    online = heartbeat_queues()
    timeout = INSPECT_TIMEOUT_ONLINE if online else INSPECT_TIMEOUT
    try:
        answers = djtasks.app.control.inspect(timeout=timeout, limit=len(online) or None
                                              ).active_queues()
    except Exception:  # the broker is away: the queues are unknown, the rule is saved anyway
        logger.debug("admin: could not ask the workers for their queues", exc_info=True)
        answers = {}
    consumed = {queue_info["name"] for answer in answers.values() if isinstance(answer, list)
                for queue_info in answer}
    silent = {hostname: names for hostname, names in online.items() if hostname not in answers}
    consumed.update(name for names in silent.values() for name in names)
    known = len(answers) + len(silent)
    if not known or queue in consumed:
        return None
    return (f"No running worker consumes queue {queue!r} ({known} worker(s) known): "
            f"tasks routed there wait until a worker is started with -Q {queue}.")


def heartbeat_queues() -> dict[str, list[str]]:
    """The queues each online worker's last heartbeat stored, by hostname."""
    try:
        rows = Worker.objects.with_status().filter(status=ONLINE)
        return {row.hostname: [str(name) for name in row.queues] for row in rows}
    except DatabaseError:  # no worker table to read: only the answers count
        logger.debug("admin: could not read the workers' heartbeats", exc_info=True)
        return {}
