"""Messages waiting on ``django://`` in the admin: task, id, queue, eta and countdown (edge layer).

Each QueueMessage row holds a kombu JSON envelope; what the list shows of it is read by
``protocol.summarize`` from its headers, so the body is never decoded. The rows live in the
broker's database (``django://<alias>``); on amqp:// or redis:// the messages wait in the
broker itself and this list is empty (the queues page shows their depths).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

import djtasks
from djtasks import protocol
from djtasks.admin.actions import batches
from djtasks.admin.filters import IndexedValuesFilter
from djtasks.admin.result_detail import preformatted, task_is_sensitive
from djtasks.admin.waiting_work import WaitingWorkAdmin, due_in
from djtasks.dashboard.depths import django_alias
from djtasks.models import QueueMessage
from djtasks.models.transport import envelope_of
from djtasks.task import HIDDEN_ARGUMENTS


def summary_of(row: QueueMessage) -> protocol.Summary:
    """Return the row's summary, read once per row (a list asks for it once per column)."""
    found = getattr(row, "_djtasks_summary", None)
    if found is None:
        found = summarize(row.payload)
        # A cache on the row object itself: the model declares no such attribute.
        row._djtasks_summary = found  # type: ignore[attr-defined]
    return found


def summarize(payload: str) -> protocol.Summary:
    envelope = envelope_of(payload)
    return protocol.summarize(envelope.get("headers"), envelope.get("properties"))


@admin.register(QueueMessage)
class QueueMessageAdmin(WaitingWorkAdmin):
    list_display = ("id", "task_name", "task_id", "queue", "eta", "countdown", "state",
                    "delivery_count", "created_at")
    # The queues by a loose scan of the fetch index, which starts with the queue.
    list_filter = (("queue", IndexedValuesFilter),)
    # Searched as a substring of the payload: the envelope names the task and its id in its
    # headers (see get_search_results). No index serves that, so the help says it scans.
    search_fields = ("payload",)
    search_help_text = ("A task id or task name. The search reads every message of the list: "
                        "filter by queue first on a long one.")
    # The fetch index's order (djtasks_qmsg_fetch_idx): a page is read off the index, with or
    # without the queue filter, and the messages are listed in the order they are delivered.
    ordering = ("queue", "-priority", "visible_at", "id")
    fields = ("id", "task_name", "task_id", "queue", "eta", "countdown", "expires", "state",
              "priority", "delivery_count", "visible_at", "created_at", "shown_payload")
    readonly_fields = fields
    on_django_broker = ("Every message waiting in (or taken from) a queue of this django:// "
                        "broker, those due later included.")
    on_other_broker = ("The messages wait in the broker itself: there are no rows to show here. "
                       "The queues page shows their depths, and Parked messages the tasks due "
                       "later.")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        alias = django_alias(djtasks.app)
        queryset = super().get_queryset(request)
        return queryset.none() if alias is None else queryset.using(alias)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet,
                           search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(payload__contains=term), False

    def task_id_of(self, row: QueueMessage) -> str | None:
        return summary_of(row).id

    def task_id_batches(self, queryset: QuerySet) -> Iterator[list[str]]:
        for payloads in batches(queryset, "payload"):
            ids = [summarize(payload).id for payload in payloads]
            yield [task_id for task_id in ids if task_id]

    @admin.display(description="task name")
    def task_name(self, row: QueueMessage) -> str:
        return summary_of(row).task or "-"

    @admin.display(description="task id")
    def task_id(self, row: QueueMessage) -> str:
        return summary_of(row).id or "-"

    @admin.display(description="eta")
    def eta(self, row: QueueMessage) -> Any:
        return summary_of(row).eta or "-"

    @admin.display(description="expires")
    def expires(self, row: QueueMessage) -> Any:
        return summary_of(row).expires or "-"

    @admin.display(description="countdown")
    def countdown(self, row: QueueMessage) -> str:
        return due_in(summary_of(row).eta)

    @admin.display(description="state", ordering="visible_at")
    def state(self, row: QueueMessage) -> str:
        if row.delivery_count and row.visible_at > timezone.now():
            return "taken by a worker"
        return "waiting"

    @admin.display(description="message")
    def shown_payload(self, row: QueueMessage) -> str:
        summary = summary_of(row)
        if summary.task and task_is_sensitive(summary.task):
            # The body holds the arguments; the rest of the envelope may show.
            envelope = {**envelope_of(row.payload), "body": HIDDEN_ARGUMENTS}
            return preformatted(json.dumps(envelope, indent=2, sort_keys=True, default=str))
        return preformatted(row.payload)
