"""What the lists of waiting work share: revoke by task id, and the broker named (edge layer).

Work waits in two places the console can read: rows of the ``django://`` queue table (each
holds a kombu message), and messages a worker parked until their eta (on any broker). Both
lists are read-only; their one action is revoke, object and bulk, through
``djtasks.app.control.revoke`` as ``result.revoke()`` does: the message stays where it is,
and the worker that receives it when it comes due skips it and marks it REVOKED.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

import djtasks
from djtasks.admin.actions import (
    ActionRefused,
    ConsoleActionsMixin,
    ObjectAction,
    console_permission,
)
from djtasks.admin.pagination import EstimatedCountPaginator
from djtasks.admin.result_detail import preformatted, task_is_sensitive
from djtasks.admin.revoking import revoke_in_batches
from djtasks.conf import censor_url
from djtasks.dashboard.depths import django_alias
from djtasks.task import HIDDEN_ARGUMENTS

REVOKE_PERMISSION = "revoke_taskresult"


def body_as_shown(task_name: str, body: bytes | memoryview) -> str:
    """A kept message's body as the console shows it: hidden when the task is sensitive."""
    if task_is_sensitive(task_name):  # the body holds the arguments
        return preformatted(HIDDEN_ARGUMENTS)
    return preformatted(bytes(body).decode("utf-8", "backslashreplace"))


class WaitingWorkAdmin(ConsoleActionsMixin, admin.ModelAdmin):
    """A read-only list of waiting task messages with revoke; subclasses say how to read ids."""

    change_list_template = "admin/djtasks/waiting_change_list.html"
    # No COUNT(*) over the table on each page (the paginator estimates big counts), no
    # facet counts, and no sorting by columns an index does not serve.
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    sortable_by = ()
    actions = ("revoke_tasks",)
    object_actions = (
        ObjectAction("revoke", "Revoke", REVOKE_PERMISSION, "revoke_one", available="has_task_id"),
    )
    #: What the page says about where this kind of work waits, by broker kind.
    on_django_broker = ""
    on_other_broker = ""

    has_revoke_permission = console_permission(REVOKE_PERMISSION)

    def task_id_of(self, row: Any) -> str | None:  # Any: each admin's own model
        raise NotImplementedError

    def task_id_batches(self, queryset: QuerySet) -> Iterator[list[str]]:
        raise NotImplementedError

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # revoke, not delete: a revoked task is recorded as such when it comes due

    def has_task_id(self, row: Model) -> bool:
        return bool(self.task_id_of(row))

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        on_django = django_alias(djtasks.app) is not None
        context = {"broker_url": censor_url(djtasks.app.settings.broker_url or ""),
                   "broker_note": self.on_django_broker if on_django else self.on_other_broker,
                   **(extra_context or {})}
        return super().changelist_view(request, context)

    def revoke_one(self, request: HttpRequest, row: Model, data: dict[str, Any]) -> str:
        task_id = self.task_id_of(row)
        if not task_id:
            raise ActionRefused(f"Cannot revoke {row}: it names no task id.")
        djtasks.app.control.revoke(task_id)
        return f"Revoked task {task_id}: the worker skips it when it comes due."

    @admin.action(description="Revoke the selected tasks", permissions=["revoke"])
    def revoke_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoke_in_batches(request, self, self.task_id_batches(queryset), "waiting task(s)")


def due_in(when: datetime | None, now: datetime | None = None) -> str:
    """Say how long until ``when`` (the countdown left), "due" once it has passed, or "-"."""
    if when is None:
        return "-"
    seconds = (when - (now or timezone.now())).total_seconds()
    return f"in {seconds:.0f} s" if seconds > 0 else "due"
