"""Parked messages in the admin: ETA and countdown tasks a worker holds until due (edge layer).

A worker that receives a task long before its eta parks it in the database and acks it;
the release sends it back to its queue when due. Revoke leaves the row alone: the worker
that receives the message then skips it.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.contrib import admin
from django.db.models import QuerySet

from djtasks.admin.actions import batches
from djtasks.admin.waiting_work import WaitingWorkAdmin, body_as_shown, due_in
from djtasks.models import ParkedMessage


@admin.register(ParkedMessage)
class ParkedMessageAdmin(WaitingWorkAdmin):
    list_display = ("task_id", "task_name", "queue", "eta", "countdown", "expires", "date_created")
    # No queue filter: no index starts with the queue, and its choices would be a
    # SELECT DISTINCT over the table on each page (?queue=<name> in the URL still filters).
    # Search: the exact id uses its index; the name prefix (case-sensitive) is checked on
    # the rows the id does not decide, a scan the help text owns up to.
    search_fields = ("task_id__exact", "task_name__startswith")
    search_help_text = ("An exact task id, or the start of a task name (that one reads every "
                        "parked message).")
    # The eta index serves the order.
    ordering = ("eta",)
    fields = ("task_id", "task_name", "queue", "exchange", "routing_key", "eta", "countdown",
              "expires", "date_created", "content_type", "content_encoding", "headers",
              "properties", "shown_body")
    readonly_fields = fields
    on_django_broker = ("On django:// a message due later waits invisible in its queue table "
                        "(see Queue messages); a worker parks one here only when clocks disagree.")
    on_other_broker = ("A worker parks here each task it receives long before its eta or "
                       "countdown; the worker holding the release lease sends it back when due.")

    def task_id_of(self, row: ParkedMessage) -> str | None:
        return row.task_id

    def task_id_batches(self, queryset: QuerySet) -> Iterator[list[str]]:
        return batches(queryset, "task_id")

    @admin.display(description="countdown", ordering="eta")
    def countdown(self, row: ParkedMessage) -> str:
        return due_in(row.eta)

    @admin.display(description="body")
    def shown_body(self, row: ParkedMessage) -> str:
        return body_as_shown(row.task_name, row.body)
