"""Queue chores both sides share: size, purge, delete, on any kombu channel (bench layer)."""

from __future__ import annotations

import contextlib
from typing import Any

from kombu import Queue

#: Keys kombu's redis transport keeps per exchange and leaves behind when a queue is deleted.
REDIS_BINDING_KEYS = ("_kombu.binding.{}", "_kombu.binding_permanent.{}")


def size(queue: Queue, channel: Any) -> int:
    """Return the number of messages ready in ``queue`` (declaring it if needed)."""
    return queue(channel).queue_declare().message_count


def purge(queue: Queue, channel: Any) -> None:
    bound = queue(channel)
    bound.declare()  # purging a queue RabbitMQ does not know is an error
    bound.purge()


def delete(queue: Queue, channel: Any, connection: Any) -> None:
    """Delete ``queue`` and its exchange, and what kombu's redis transport keeps for them."""
    bound = queue(channel)
    bound.delete()
    with contextlib.suppress(Exception):  # other queues may still be bound to it
        bound.exchange.delete()
    if connection.transport_cls in ("redis", "rediss"):
        channel.client.delete(*(key.format(queue.exchange.name) for key in REDIS_BINDING_KEYS))
