"""Parked ETA messages, delivery counts and dead letters: the worker's durable state (storage layer).

A task message that reaches a worker long before its eta is parked here and acknowledged,
so that no worker holds it in memory for the wait; the worker holding the release lease
publishes it again, byte for byte, when it is due. Deliveries count how often a task was
started, so a message whose execution keeps killing its worker is stopped and kept as a
dead letter instead of looping for ever.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ParkedMessageQuerySet(models.QuerySet["ParkedMessage"]):
    def due(self, until: datetime, now: datetime) -> ParkedMessageQuerySet:
        """Return what to publish again: due by ``until``, or already expired at ``now``.

        An expired message goes back to its queue too: the consumer that receives it marks
        it REVOKED ("expired") and fails its canvas, as it does for any expired message.
        """
        return self.filter(Q(eta__lte=until) | Q(expires__lte=now))


class ParkedMessage(models.Model):
    """A task message taken off its queue until its eta: everything needed to send it again."""

    task_id = models.CharField(_("task id"), max_length=255, db_index=True)
    task_name = models.CharField(_("task name"), max_length=255, blank=True)
    eta = models.DateTimeField(_("eta"), db_index=True)
    expires = models.DateTimeField(_("expires"), null=True, blank=True, db_index=True)
    # Where it goes back to: the queue it came from (through the default exchange), or,
    # when the queue could not be told, the exchange and routing key it was published with.
    queue = models.CharField(_("queue"), max_length=255, blank=True)
    exchange = models.CharField(_("exchange"), max_length=255, blank=True)
    routing_key = models.CharField(_("routing key"), max_length=255, blank=True)
    # The message as received, still encoded: republished unchanged, whoever sent it.
    content_type = models.CharField(_("content type"), max_length=128)
    content_encoding = models.CharField(_("content encoding"), max_length=64, blank=True)
    body = models.BinaryField(_("body"))
    headers = models.JSONField(_("headers"), default=dict, encoder=DjangoJSONEncoder)
    properties = models.JSONField(_("properties"), default=dict, encoder=DjangoJSONEncoder)
    date_created = models.DateTimeField(_("parked"), default=timezone.now)

    objects = ParkedMessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("parked message")
        verbose_name_plural = _("parked messages")
        constraints = [
            # A message delivered twice before its ack (a worker died in between) is parked
            # once; a retry of the same task has another eta and is a message of its own.
            models.UniqueConstraint(fields=["task_id", "eta"], name="djtasks_parked_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name or '?'}[{self.task_id}] parked until {self.eta.isoformat()}"


class TaskDelivery(models.Model):
    """How many times a worker started one message of a task (its id and retry number)."""

    task_id = models.CharField(_("task id"), max_length=255)
    retries = models.PositiveIntegerField(_("retries"), default=0)
    count = models.PositiveIntegerField(_("deliveries"), default=0)
    date_last = models.DateTimeField(_("last delivered"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("task delivery")
        verbose_name_plural = _("task deliveries")
        constraints = [models.UniqueConstraint(fields=["task_id", "retries"],
                                               name="djtasks_delivery_unique")]

    def __str__(self) -> str:
        return f"{self.task_id} (retry {self.retries}) delivered {self.count} times"


#: How much of an unreadable message a DeadLetter keeps.
KEPT_MESSAGE_SIZE = 100_000

#: Why a message was dead-lettered, for a program (or a filter) to read; ``reason`` says it
#: to a person.
REASON_CODES = [
    ("decode_error", _("the body or a header could not be decoded")),
    ("content_disallowed", _("its content type is not in accept_content")),
    ("not_registered", _("no task of its name is registered")),
    ("invalid_envelope", _("not a Celery protocol v2 task message")),
    ("invalid_eta", _("an eta or expires that is not a time before year 10000")),
    ("too_large", _("over task_max_message_size")),
    ("too_many_deliveries", _("delivered task_max_deliveries times")),
    ("not_sendable", _("a parked message that could not be sent back")),
    ("unexpected", _("it could not be read, for a reason of no other code")),
]


class DeadLetterQuerySet(models.QuerySet["DeadLetter"]):
    def keep_unreadable(self, message: str | bytes, reason: str, *, reason_code: str,
                        task_id: str = "", task_name: str = "", queue: str = "",
                        worker: str = "", keep_at_most: int | None = None) -> DeadLetter:
        """Keep a message that could not be read or sent on, as received, with the reason.

        Without a ``task_id`` (none was usable) each call keeps a row of its own; with one,
        the task's row is replaced.
        """
        if isinstance(message, bytes):
            message = message.decode("utf-8", "backslashreplace")
        # PostgreSQL's text holds no NUL; the rest is kept as received.
        values = {"task_name": task_name[:255], "queue": queue[:255], "deliveries": 1,
                  "reason": reason, "reason_code": reason_code, "worker": worker[:255],
                  "date_created": timezone.now(),
                  "message": message[:KEPT_MESSAGE_SIZE].replace("\x00", "\\x00")}
        return self.keep(task_id, values, keep_at_most)

    def keep(self, task_id: str, values: dict[str, Any], keep_at_most: int | None) -> DeadLetter:
        """Create the dead letter of ``task_id`` from ``values``, or replace the one it has.

        Without a task id each call keeps a row of its own. Then the table is trimmed to
        its ``keep_at_most`` newest rows (dead_letter_max_count).
        """
        if not task_id:
            row = self.create(task_id="", **values)
        else:
            row = self.update_or_create(task_id=task_id, defaults={
                **values, "replayed_at": None, "replayed_by": ""})[0]
        self.trim(row.pk, keep_at_most)
        return row

    def trim(self, newest_pk: int, keep: int | None) -> int:
        """Delete the rows older than the ``keep`` newest, counted back from ``newest_pk``.

        Primary keys only grow, so this is one indexed DELETE, however full the table is:
        a flood of bad messages cannot fill the database with their copies.
        """
        if keep is None:
            return 0
        return self.filter(pk__lte=newest_pk - keep).delete()[0]

    def claim_replay(self, pk: int, by: str, now: datetime) -> bool:
        """Mark the dead letter ``pk`` replayed by ``by`` at ``now``; False if it already was.

        One UPDATE ... WHERE replayed_at IS NULL: of two replays at once (a double click,
        two admins) exactly one gets True, whatever the database's isolation level.
        """
        return self.filter(pk=pk, replayed_at__isnull=True).update(
            replayed_at=now, replayed_by=by[:255]) == 1

    def give_back_replay(self, pk: int, by: str, now: datetime) -> bool:
        """Undo ``claim_replay(pk, by, now)`` after its publish failed; False if not that claim."""
        return self.filter(pk=pk, replayed_at=now, replayed_by=by[:255]).update(
            replayed_at=None, replayed_by="") == 1


class DeadLetter(models.Model):
    """A task message that was not run, kept to look at: delivered too often, or unreadable.

    An unreadable one (a queue row that is not JSON, an id too long to store a result
    under, a parked message that cannot be sent back) has no usable task id: ``task_id``
    is empty and ``message`` holds what was received.
    """

    task_id = models.CharField(_("task id"), max_length=255, blank=True)
    task_name = models.CharField(_("task name"), max_length=255, blank=True, db_index=True)
    queue = models.CharField(_("queue"), max_length=255, blank=True)
    task_args = models.TextField(_("arguments"), blank=True)
    task_kwargs = models.TextField(_("keyword arguments"), blank=True)
    retries = models.PositiveIntegerField(_("retries"), default=0)
    deliveries = models.PositiveIntegerField(_("deliveries"))
    reason = models.TextField(_("reason"))
    reason_code = models.CharField(_("reason code"), max_length=32, choices=REASON_CODES,
                                   blank=True, db_index=True)
    worker = models.CharField(_("worker"), max_length=255, blank=True)
    message = models.TextField(_("message as received"), blank=True)
    date_created = models.DateTimeField(_("dead-lettered"), default=timezone.now, db_index=True)
    # The message still encoded, as ParkedMessage keeps it, to publish it again unchanged.
    # Kept for a task delivered too often; an unreadable message has none (body is NULL).
    exchange = models.CharField(_("exchange"), max_length=255, blank=True)
    routing_key = models.CharField(_("routing key"), max_length=255, blank=True)
    content_type = models.CharField(_("content type"), max_length=128, blank=True)
    content_encoding = models.CharField(_("content encoding"), max_length=64, blank=True)
    body = models.BinaryField(_("body"), null=True, blank=True)
    headers = models.JSONField(_("headers"), default=dict, blank=True, encoder=DjangoJSONEncoder)
    properties = models.JSONField(_("properties"), default=dict, blank=True,
                                  encoder=DjangoJSONEncoder)
    # Set once, by the one replay that won (claim_replay); cleared when it is dead-lettered again.
    replayed_at = models.DateTimeField(_("replayed"), null=True, blank=True)
    replayed_by = models.CharField(_("replayed by"), max_length=255, blank=True)

    objects = DeadLetterQuerySet.as_manager()

    class Meta:
        verbose_name = _("dead letter")
        verbose_name_plural = _("dead letters")
        ordering = ("-date_created",)
        permissions = [("replay_deadletter", _("Can publish a dead letter again"))]
        constraints = [
            # One per task id; the unreadable ones, without an id, are each a row of their own.
            models.UniqueConstraint(fields=["task_id"], condition=~Q(task_id=""),
                                    name="djtasks_deadletter_unique_task_id"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name or '?'}[{self.task_id}] dead-lettered"

    def replay_refusal(self) -> str | None:
        """Say why this dead letter cannot be published again; None when it can."""
        if self.replayed_at is not None:
            return f"it was replayed already, by {self.replayed_by or '?'} at {self.replayed_at.isoformat()}"
        if not self.task_id or self.body is None or not self.content_type:
            return ("it was unreadable (no usable task id, or not a task message), so only its "
                    "text was kept, not a message that could be sent again")
        return None
