"""QueueMessage: one message of the django:// kombu transport (storage layer)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from kombu.utils.json import loads


class QueueMessageQuerySet(models.QuerySet["QueueMessage"]):
    """Queries named for the states a queued message goes through."""

    def ready(self, now: datetime) -> QueueMessageQuerySet:
        """Return the messages a consumer may take at ``now``."""
        return self.filter(visible_at__lte=now)

    def leased(self, now: datetime) -> QueueMessageQuerySet:
        """Return the messages a consumer holds (taken, not yet acknowledged) at ``now``."""
        return self.filter(visible_at__gt=now)


class QueueMessage(models.Model):
    """A message waiting in, or leased from, a queue of the ``django://`` transport.

    A message is never removed when a consumer takes it: taking it moves ``visible_at``
    into the future (a lease), acknowledging it deletes the row, and a lease that nobody
    renews runs out, so the message of a consumer that died is delivered again.
    """

    queue = models.CharField(max_length=255)
    # The kombu message (body, headers, properties) as JSON text.
    payload = models.TextField()
    # AMQP priority 0-9: a higher number is delivered first.
    priority = models.PositiveSmallIntegerField(default=0)
    visible_at = models.DateTimeField()
    delivery_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()

    objects = QueueMessageQuerySet.as_manager()

    class Meta:
        verbose_name = "queue message"
        indexes = [
            # The fetch: WHERE queue = %s AND visible_at <= now
            # ORDER BY priority DESC, visible_at, id. Leased rows sort after the ready ones
            # of their priority, so a fetch reads ready entries first.
            models.Index(
                fields=["queue", "-priority", "visible_at", "id"],
                name="djtasks_qmsg_fetch_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.queue} #{self.pk}"


def envelope_of(payload: str) -> dict[str, Any]:
    """Return the kombu message of a QueueMessage payload; {} when it is not one.

    The transport wrote it with kombu's JSON, so it is read back the same way.
    """
    try:
        message = loads(payload)
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


class QueueBinding(models.Model):
    """A queue bound to an exchange of the ``django://`` transport.

    kombu's virtual transports keep bindings in each process's memory; these rows make
    them visible to every process, which fanout exchanges (a broadcast reaches the queues
    that other processes bound) and replies to another process's queue need.
    """

    exchange = models.CharField(max_length=255)
    queue = models.CharField(max_length=255)
    routing_key = models.CharField(max_length=255, blank=True, default="")
    # The topic exchange's regular expression for routing_key; NULL for the other types,
    # as kombu's binding tables hold None there and compare whole entries.
    pattern = models.TextField(null=True, blank=True)  # noqa: DJ001

    class Meta:
        verbose_name = "queue binding"
        constraints = [
            models.UniqueConstraint(fields=["exchange", "queue", "routing_key"],
                                    name="djtasks_qbinding_unique"),
        ]
        indexes = [models.Index(fields=["queue"], name="djtasks_qbinding_queue_idx")]

    def __str__(self) -> str:
        return f"{self.exchange} -> {self.queue} ({self.routing_key})"
