"""Queue depths asked of the broker: waiting, unacknowledged and consumers per queue (edge layer)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from djtasks.models import QueueMessage, Worker

#: Shown for a number the broker does not tell.
UNKNOWN = None


@dataclass
class Depth:
    """One queue as the console shows it; ``None`` means the broker does not tell."""

    name: str
    waiting: int | None = None
    unacked: int | None = None
    consumers: int | None = None


@dataclass
class Depths:
    """Every queue's depth, or why the broker could not be asked."""

    queues: list[Depth]
    error: str = ""


def without_credentials(text: str) -> str:
    """Drop ``user:password@`` from any URL in ``text``: a broker error may quote its URL."""
    return re.sub(r"(\w+://)[^/@\s]*@", r"\1", text)


def known_queues(app: Any) -> list[str]:
    """The queues the workers consume, the configured ones and the django:// ones with rows."""
    names = {app.settings.task_default_queue}
    names.update(routed_queues(app.settings.task_routes))
    for queues in Worker.objects.with_status().filter(status="online").values_list("queues", flat=True):
        names.update(name for name in queues or () if isinstance(name, str))
    alias = django_alias(app)
    if alias is not None:
        rows = QueueMessage.objects.using(alias).order_by("queue").values_list("queue", flat=True)
        names.update(rows.distinct())
    return sorted(name for name in names if name)


def routed_queues(routes: Any) -> set[str]:
    """The queue names a ``task_routes`` mapping (or a list of them) sends to."""
    found: set[str] = set()
    for table in routes if isinstance(routes, (list, tuple)) else [routes]:
        if not isinstance(table, dict):
            continue  # a router function: its queues are known only once it runs
        for route in table.values():
            queue = route.get("queue") if isinstance(route, dict) else route
            name = getattr(queue, "name", queue)  # a kombu Queue or its name
            if isinstance(name, str):
                found.add(name)
    return found


def django_alias(app: Any) -> str | None:
    """The database alias of a django:// broker, None on any other broker."""
    url = app.settings.broker_url or ""
    if not url.startswith("django://"):
        return None
    return url.removeprefix("django://").strip("/") or "default"


def consumers_from_workers(names: list[str]) -> dict[str, int]:
    """How many online workers say they consume each queue (for brokers that do not count)."""
    counts = dict.fromkeys(names, 0)
    for queues in Worker.objects.with_status().filter(status="online").values_list("queues", flat=True):
        for name in queues or ():
            if name in counts:
                counts[name] += 1
    return counts


def queue_depths(app: Any, names: list[str] | None = None) -> Depths:
    """Ask the broker how deep each queue is; a broker error is returned, never raised."""
    names = known_queues(app) if names is None else names
    alias = django_alias(app)
    try:
        if alias is not None:
            queues = django_depths(alias, names)
        else:
            queues = declared_depths(app, names)
    except Exception as error:
        return Depths([Depth(name) for name in names],
                      f"broker unreachable: {without_credentials(str(error)) or type(error).__name__}")
    return Depths(queues)


def django_depths(alias: str, names: list[str]) -> list[Depth]:
    """django://: one grouped query; waiting rows are visible now, leased ones are unacked."""
    now = timezone.now()
    rows = (QueueMessage.objects.using(alias).filter(queue__in=names).values("queue")
            .annotate(waiting=Count("id", filter=Q(visible_at__lte=now)),
                      unacked=Count("id", filter=Q(visible_at__gt=now))))
    found = {row["queue"]: (row["waiting"], row["unacked"]) for row in rows}
    consumers = consumers_from_workers(names)
    return [Depth(name, *found.get(name, (0, 0)), consumers[name]) for name in names]


def declared_depths(app: Any, names: list[str]) -> list[Depth]:
    """AMQP and Redis: a passive queue_declare per queue gives the waiting count.

    RabbitMQ counts consumers and knows nothing of unacked messages over AMQP; Redis'
    declare sums the priority sub-queues, and its unacked messages are counted from the
    transport's unacked hash, which names each message's queue.
    """
    is_redis = (app.settings.broker_url or "").startswith(("redis", "rediss"))
    worker_consumers = consumers_from_workers(names)
    depths = []
    with app.connection() as connection:
        connection.ensure_connection(max_retries=1)
        for name in names:
            channel = connection.channel()
            try:
                depths.append(declared_depth(channel, name, is_redis, worker_consumers[name]))
            finally:
                _close_quietly(channel)
        if is_redis:
            add_redis_unacked(connection, depths)
    return depths


def declared_depth(channel: Any, name: str, is_redis: bool, worker_consumers: int) -> Depth:
    try:
        _, waiting, consumers = channel.queue_declare(queue=name, passive=True)
    except Exception as error:
        if "NOT_FOUND" in str(error) or "404" in str(error):
            return Depth(name, 0, UNKNOWN if not is_redis else 0, 0)
        raise
    if is_redis:
        return Depth(name, waiting, 0, worker_consumers)
    return Depth(name, waiting, UNKNOWN, consumers)


def add_redis_unacked(connection: Any, depths: list[Depth]) -> None:
    """Count the messages in kombu's unacked hash by the routing key each was published with."""
    from kombu.utils.json import loads

    channel = connection.default_channel
    by_name = {depth.name: depth for depth in depths}
    with channel.conn_or_acquire() as client:
        for raw in client.hvals(channel.unacked_key):
            try:
                # [message, exchange, routing_key]: our queues are bound by their own name.
                queue = loads(raw)[2]
            except (ValueError, IndexError, TypeError):
                continue
            if queue in by_name:
                depth = by_name[queue]
                depth.unacked = (depth.unacked or 0) + 1  # declared_depth gave Redis queues 0


def _close_quietly(channel: Any) -> None:
    try:
        channel.close()
    except Exception:  # noqa: S110 - a channel the broker already closed
        pass
