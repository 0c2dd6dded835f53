"""Dead letters in the admin: why each message was not run, the message itself, replay once (edge layer).

Replay publishes the message kept as received again, unchanged, to the queue it came from,
on the app's pooled producer (``Publisher.republish``, the code the ETA release uses for
parked messages). It happens once: one conditional UPDATE marks the row replayed, so of
two clicks (or two admins) only one publishes; the other is told who did it. The task's
delivery count is reset with it, or the replayed message would be dead-lettered again on
its first delivery. When the broker is away (or no pooled producer frees up within
``broker_connection_timeout``) the mark is taken back: the row may be replayed later.

On ``django://`` with the queue in the dead letters' database, mark and publish commit in
one transaction: exactly once. On any other broker the mark is committed first and the
publish follows outside any transaction; a failed publish gives the mark back, and only a
process dying between the two leaves a row marked but not sent (at most once). Delete is
Django's own.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.db import router, transaction
from django.http import HttpRequest
from django.utils import timezone

import djtasks
from djtasks.admin.actions import ActionRefused, ConsoleActionsMixin, ObjectAction
from djtasks.admin.filters import IndexedValuesFilter
from djtasks.admin.pagination import EstimatedCountPaginator
from djtasks.admin.result_detail import preformatted, task_is_sensitive
from djtasks.dashboard.depths import django_alias
from djtasks.exceptions import OperationalError
from djtasks.models import DeadLetter, TaskDelivery
from djtasks.task import HIDDEN_ARGUMENTS

#: How much of the reason the list shows; the page shows all of it.
REASON_IN_LIST = 80


@admin.register(DeadLetter)
class DeadLetterAdmin(ConsoleActionsMixin, admin.ModelAdmin):
    list_display = ("task_id", "task_name", "reason_code", "short_reason", "date_created", "queue",
                    "worker", "deliveries", "replayed_at")
    # Filters an index serves: task_name's (a loose scan), reason_code's (its choices),
    # date_created's (ranges). Not
    # date_hierarchy, a SELECT DISTINCT of the days on each page; not queue or worker,
    # which have no index (?queue=<name> in the URL still filters).
    list_filter = (("task_name", IndexedValuesFilter), "reason_code",
                   ("date_created", admin.DateFieldListFilter))
    # Exact id and name prefix, case-sensitive: istartswith would compare UPPER(task_name).
    search_fields = ("task_id__exact", "task_name__startswith")
    # The order is date_created's index (Meta.ordering, newest first).
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    sortable_by = ("date_created",)
    fields = ("task_id", "task_name", "reason_code", "reason", "date_created", "worker", "deliveries",
              "retries", "queue", "exchange", "routing_key", "task_args", "task_kwargs", "replay",
              "replayed_at", "replayed_by", "as_received")
    readonly_fields = fields
    object_actions = (
        ObjectAction("replay", "Replay", "replay_deadletter", "replay_one", available="replayable"),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the workers write dead letters

    def has_change_permission(self, request: HttpRequest, obj: DeadLetter | None = None) -> bool:
        return False  # read-only: replayed or deleted, never edited

    @admin.display(description="reason")
    def short_reason(self, row: DeadLetter) -> str:
        reason = row.reason
        return reason if len(reason) <= REASON_IN_LIST else reason[:REASON_IN_LIST - 1] + "…"

    @admin.display(description="replay")
    def replay(self, row: DeadLetter) -> str:
        refusal = row.replay_refusal()
        return f"Cannot be replayed: {refusal}." if refusal else "Can be replayed once."

    @admin.display(description="message as received")
    def as_received(self, row: DeadLetter) -> str:
        return preformatted(message_text(row, hidden=task_is_sensitive(row.task_name)))

    def replayable(self, row: DeadLetter) -> bool:
        return row.replay_refusal() is None

    def replay_one(self, request: HttpRequest, row: DeadLetter, data: dict[str, Any]) -> str:
        refusal = row.replay_refusal()
        if refusal:
            raise ActionRefused(f"Cannot replay {row}: {refusal}.")
        db = router.db_for_write(DeadLetter)
        by, now = request.user.get_username(), timezone.now()
        if django_alias(djtasks.app) == db:
            # The queue is a table of this database: the publish is a row written in the
            # claim's transaction, so both commit or neither does. Exactly once.
            with transaction.atomic(using=db):
                self.claim(row, db, by, now)
                self.publish(row)  # raising rolls the claim back
        else:
            # The broker is elsewhere: no transaction may stay open across its publish
            # (SQLite would hold its write lock, a commit failing after the publish would
            # leave the row unmarked). Commit the claim, publish, give it back on failure.
            with transaction.atomic(using=db):
                self.claim(row, db, by, now)
            try:
                self.publish(row)
            except ActionRefused:
                DeadLetter.objects.using(db).give_back_replay(row.pk, by, now)
                raise
        where = row.queue or f"exchange {row.exchange!r}, routing key {row.routing_key!r}"
        return f"Replayed {row.task_name}[{row.task_id}] to {where}, unchanged."


    def claim(self, row: DeadLetter, db: str, by: str, now: datetime) -> None:
        """Mark ``row`` replayed by ``by``, or refuse if someone did; reset its delivery count.

        The count is reset before the publish, or the replayed message would be
        dead-lettered again on its first delivery.
        """
        if not DeadLetter.objects.using(db).claim_replay(row.pk, by, now):
            row.refresh_from_db(fields=["replayed_at", "replayed_by"])
            raise ActionRefused(f"Cannot replay {row}: {row.replay_refusal()}.")
        TaskDelivery.objects.using(router.db_for_write(TaskDelivery)).filter(
            task_id=row.task_id).delete()

    def publish(self, row: DeadLetter) -> None:
        try:
            djtasks.app.publisher.republish(row)
        except OperationalError as exc:
            raise ActionRefused(f"Cannot replay {row}: {exc}") from exc


def message_text(row: DeadLetter, hidden: bool = False) -> str:
    """Return the dead letter's message as received, as text: kept text, or the kept message.

    ``hidden`` (a sensitive task): the body, which holds the arguments, reads "[hidden]";
    a kept text holds the body somewhere in it, so all of it does.
    """
    if row.message or row.body is None:
        return HIDDEN_ARGUMENTS if hidden and row.message else row.message
    body = bytes(row.body)
    if hidden:
        shown = HIDDEN_ARGUMENTS
    elif row.content_encoding in ("utf-8", "utf8", ""):
        shown = body.decode("utf-8", "backslashreplace")
    else:
        shown = repr(body)
    return (f"content type: {row.content_type}\ncontent encoding: {row.content_encoding}\n"
            f"headers: {json.dumps(row.headers, indent=2, sort_keys=True, default=str)}\n"
            f"properties: {json.dumps(row.properties, indent=2, sort_keys=True, default=str)}\n"
            f"body: {shown}")
