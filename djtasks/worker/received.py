"""The message as received, still encoded: what the worker keeps to send it again (processes layer).

A parked message (due later) and a dead letter (delivered too often) both keep the message
exactly as it arrived, so that it can be published again byte for byte, whoever sent it
(a djtasks client or a Celery one): the encoded body, its content type and encoding, the
headers, the properties that belong to the message, and where it came from.
``djtasks.publish.republish`` sends such a record back.
"""

from __future__ import annotations

from typing import Any

import kombu

from djtasks import protocol

#: Message properties that travel with a kept message; the others belong to one delivery
#: (delivery tags, a transport's body encoding) or to one connection (AMQP's user_id).
KEPT_PROPERTIES = ("correlation_id", "reply_to", "priority", "delivery_mode", "message_id",
                   "type", "app_id", "expiration")


def as_received(message: kombu.Message, queue: str, priority: int | None = None) -> dict[str, Any]:
    """Return the fields (of ParkedMessage and DeadLetter) that keep ``message`` to send again.

    ``queue`` is the queue it came from ("" when the delivery cannot tell: then it goes back
    through the exchange and routing key it was published with). ``priority`` is the
    task's, for transports that carry it in delivery_info only.
    """
    properties = {key: message.properties[key] for key in KEPT_PROPERTIES
                  if message.properties.get(key) is not None}
    if priority is not None:
        properties.setdefault("priority", priority)
    body = message.body
    delivery_info = message.delivery_info or {}
    return {
        "queue": queue, "exchange": delivery_info.get("exchange") or "",
        "routing_key": delivery_info.get("routing_key") or "",
        "content_type": message.content_type or "",
        "content_encoding": message.content_encoding or "",
        "body": body.encode(message.content_encoding or "utf-8") if isinstance(body, str) else body,
        # Without "compression": kombu decompressed the body already.
        "headers": {key: value for key, value in (message.headers or {}).items()
                    if key not in protocol.TRANSPORT_HEADERS},
        "properties": properties,
    }
