"""Which queue names and routing keys every supported broker can carry (pure layer).

| broker | limit |
| --- | --- |
| ``amqp://`` (RabbitMQ) | 255 bytes of UTF-8 (an AMQP short string); queues named ``amq.*`` are reserved |
| ``django://`` | 255 characters (the ``queue`` and ``routing_key`` columns) |
| ``redis://`` | no control characters: kombu joins binding keys with ``\\x06\\x16`` |

A name is checked against all of them, not only the broker configured here: routing rules
travel between environments as fixtures, and a rule written on one broker must keep
working on the next.
"""

from __future__ import annotations

import unicodedata

MAX_NAME_BYTES = 255


def name_problem(value: str, what: str = "queue") -> str | None:
    """Return why no broker can carry ``value`` as a ``what`` (queue, routing key), or None."""
    if not value.strip():
        return f"expected a {what} name, got only white space"
    if value != value.strip():
        return f"expected a {what} name without white space at its ends, got {value!r}"
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        return f"expected a {what} name without control characters, got {value!r}"
    size = len(value.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return (f"expected a {what} name of at most {MAX_NAME_BYTES} bytes (RabbitMQ's and the "
                f"django:// transport's limit), got {size}")
    if what == "queue" and value.startswith("amq."):
        return f"expected a queue name RabbitMQ allows, got {value!r} (amq.* is reserved)"
    return None
