"""OutboxMessage: a task published inside a transaction, kept until it is sent (storage layer).

``delay_on_commit()`` (and, with ``task_outbox``, any publish inside ``transaction.atomic()``)
writes the encoded message here, in the caller's transaction: rolled back, there is no task;
committed, the row exists, and is published and deleted right after the commit. A row left
behind (its process died between the commit and the publish, or the broker was away) is
sent by whichever worker holds the release lease, ``RELAY_AFTER`` seconds after it was
written (``worker/release.py``). At least once: a row sent but not yet deleted when its
process dies is sent again.
"""

from __future__ import annotations

from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class OutboxQuerySet(models.QuerySet["OutboxMessage"]):
    def stranded(self, written_before: datetime) -> OutboxQuerySet:
        """Rows written before ``written_before`` and still here: their publish did not happen."""
        return self.filter(date_created__lt=written_before)


class OutboxMessage(models.Model):
    """One encoded task message and where it goes, as ``publish.Outgoing`` holds it."""

    id = models.BigAutoField(primary_key=True)
    task_id = models.CharField(_("task id"), max_length=255)
    task_name = models.CharField(_("task name"), max_length=255)
    exchange = models.CharField(_("exchange"), max_length=255, blank=True)
    routing_key = models.CharField(_("routing key"), max_length=255, blank=True)
    # The queue declared before publishing, as a direct publish declares it.
    queue = models.CharField(_("queue"), max_length=255)
    queue_exchange = models.CharField(_("queue's exchange"), max_length=255)
    queue_exchange_type = models.CharField(_("queue's exchange type"), max_length=16, default="direct")
    queue_routing_key = models.CharField(_("queue's routing key"), max_length=255)
    content_type = models.CharField(_("content type"), max_length=128)
    content_encoding = models.CharField(_("content encoding"), max_length=64, blank=True)
    body = models.BinaryField(_("body"))
    headers = models.JSONField(_("headers"), default=dict, encoder=DjangoJSONEncoder)
    properties = models.JSONField(_("properties"), default=dict, encoder=DjangoJSONEncoder)
    date_created = models.DateTimeField(_("written"), default=timezone.now, db_index=True)

    objects = OutboxQuerySet.as_manager()

    class Meta:
        verbose_name = _("outbox message")
        verbose_name_plural = _("outbox messages")

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] waiting to be sent"
