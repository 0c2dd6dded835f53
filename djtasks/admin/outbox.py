"""Outbox messages in the admin: tasks published in a transaction and not sent yet (edge layer).

A row lives for the moment between its transaction's commit and its publish; one that stays
(its process died in between, or the broker is away) is sent by the worker holding the
release lease ``RELAY_AFTER`` seconds after it was written. The list shows which rows wait
for that; revoke works as on the other lists of waiting work.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.contrib import admin
from django.db.models import QuerySet
from django.utils import timezone

from djtasks.admin.actions import batches
from djtasks.admin.waiting_work import WaitingWorkAdmin, body_as_shown
from djtasks.models import OutboxMessage
from djtasks.publish import RELAY_AFTER


@admin.register(OutboxMessage)
class OutboxMessageAdmin(WaitingWorkAdmin):
    list_display = ("task_id", "task_name", "queue", "date_created", "state")
    search_fields = ("task_id__exact",)
    search_help_text = "An exact task id."
    ordering = ("date_created",)  # its index: the oldest, the ones a worker sends, first
    fields = ("task_id", "task_name", "queue", "exchange", "routing_key", "date_created", "state",
              "content_type", "content_encoding", "headers", "properties", "shown_body")
    readonly_fields = fields
    on_django_broker = ("On django:// no message goes through the outbox: the message row is "
                        "written in the caller's transaction itself.")
    on_other_broker = (f"A row stays here from its transaction's commit until its publish; one "
                       f"older than {RELAY_AFTER:g} s is sent by the worker holding the release "
                       f"lease.")

    def task_id_of(self, row: OutboxMessage) -> str | None:
        return row.task_id

    def task_id_batches(self, queryset: QuerySet) -> Iterator[list[str]]:
        return batches(queryset, "task_id")

    @admin.display(description="state")
    def state(self, row: OutboxMessage) -> str:
        if row.date_created < timezone.now() - timedelta(seconds=RELAY_AFTER):
            return "left by its publisher: a worker sends it"
        return "being sent after its commit"

    @admin.display(description="body")
    def shown_body(self, row: OutboxMessage) -> str:
        return body_as_shown(row.task_name, row.body)
