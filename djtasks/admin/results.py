"""TaskResult in the admin: state badges, filters, revoke, terminate and retry (edge layer).

Revoke goes through ``app.control.revoke``, as ``result.revoke()`` does, so workers running
now and those started later skip the task; terminate also stops it where it runs, with the
signal chosen. Retry sends the task again through ``app.send_task`` with its stored
arguments, to the queue it ran on, under a new id whose result links back ("retry of").
The change page is a detail page (``result_detail``); delete is Django's own.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

import djtasks
from djtasks import states
from djtasks.admin.actions import (
    ConsoleActionsMixin,
    ObjectAction,
    batches,
    console_permission,
)
from djtasks.admin.bulk_delete import delete_selected
from djtasks.admin.filters import IndexedValuesFilter
from djtasks.admin.pagination import EstimatedCountPaginator
from djtasks.admin.result_actions import TerminateForm, send_again, terminate
from djtasks.admin.result_detail import ResultDetailMixin
from djtasks.admin.revoking import revoke_in_batches
from djtasks.models import TaskResult

#: Badge colours by state; the others are grey.
STATE_COLOURS = {states.SUCCESS: "#3a9d23", states.FAILURE: "#ba2121", states.RETRY: "#d98e04",
                 states.STARTED: "#2b6cb0", states.REVOKED: "#6b6b6b", states.PENDING: "#888888"}


@admin.register(TaskResult)
class TaskResultAdmin(ResultDetailMixin, ConsoleActionsMixin, admin.ModelAdmin):
    list_display = ("task_id", "task_name", "state", "runtime", "worker", "queue", "retries",
                    "date_created", "date_done")
    # Not date_hierarchy: it lists the days that have rows with a SELECT DISTINCT over the
    # month's rows on each page; these date ranges cost nothing to offer.
    list_filter = ("status", ("date_created", admin.DateFieldListFilter),
                   ("queue", IndexedValuesFilter), ("worker", IndexedValuesFilter),
                   ("task_name", IndexedValuesFilter))
    # Exact id and name prefix, both case-sensitive: each uses an index (iexact/istartswith
    # would compare UPPER(column) and scan the table).
    search_fields = ("task_id__exact", "task_name__startswith")
    # No COUNT(*) over the whole table on each page: the paginator estimates big counts.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    # delete_selected takes the place of Django's: batched, one LogEntry, same permission.
    actions = ("revoke_tasks", delete_selected)
    object_actions = (
        ObjectAction("revoke", "Revoke", "revoke_taskresult", "revoke_one", available="unfinished"),
        ObjectAction("terminate", "Terminate", "terminate_taskresult", "terminate_one",
                     form=TerminateForm, available="unfinished"),
        ObjectAction("retry", "Retry", "retry_taskresult", "retry_one", available="finished"),
    )

    has_revoke_permission = console_permission("revoke_taskresult")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="state", ordering="status")
    def state(self, row: TaskResult) -> str:
        colour = STATE_COLOURS.get(row.status, "#888888")
        return format_html('<span class="djtasks-state djtasks-state-{}" style="color:#fff;'
                           'background:{};padding:1px 6px;border-radius:3px">{}</span>',
                           row.status, colour, row.status)

    def unfinished(self, row: TaskResult) -> bool:
        return row.status not in states.READY_STATES

    def finished(self, row: TaskResult) -> bool:
        return row.status in states.READY_STATES

    def revoke_one(self, request: HttpRequest, row: TaskResult, data: dict[str, Any]) -> str:
        djtasks.app.control.revoke(row.task_id)
        if row.status == states.STARTED:  # revoke stops nothing already running: terminate does
            return f"Revoked task {row.task_id}: it runs on to its end; no worker will start it again."
        return f"Revoked task {row.task_id}: no worker will run it."

    def terminate_one(self, request: HttpRequest, row: TaskResult, data: dict[str, Any]) -> str:
        return terminate(djtasks.app, row, data["signal"])

    def retry_one(self, request: HttpRequest, row: TaskResult, data: dict[str, Any]) -> str:
        new_id = send_again(djtasks.app, row)
        return f"Sent {row.task_name} again as {new_id} (retry of {row.task_id})."

    @admin.action(description="Revoke the selected tasks", permissions=["revoke"])
    def revoke_tasks(self, request: HttpRequest, queryset: QuerySet) -> None:
        unfinished = queryset.exclude(status__in=states.READY_STATES)
        revoke_in_batches(request, self, batches(unfinished, "task_id"), "task(s)")
