"""Watching the workers: the event stream, and the Worker rows (processes layer).

``djtasks events --dump`` binds a queue of its own to the ``celeryev`` exchange and
prints every event as it comes, djtasks' and Celery's alike. ``djtasks status --all``
reads the ``Worker`` rows, so it answers even when no worker answers a broadcast.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import kombu
from django.db import router
from django.utils import timezone

from djtasks.application import App
from djtasks.models import Worker
from djtasks.utils import events

if TYPE_CHECKING:
    from djtasks.models.workers import WorkerWithStatus


def event_queue(connection: kombu.Connection) -> kombu.Queue:
    """A queue of this process only, receiving every event (deleted when it goes away)."""
    exchange = events.event_exchange(connection.transport.driver_type)
    return kombu.Queue(f"{events.EXCHANGE_NAME}.{uuid.uuid4()}", exchange, routing_key="#",
                       durable=False, auto_delete=True, message_ttl=60.0, expires=120.0)


def stream_events(app: App, *, timeout: float | None = None,
                  stopped: Callable[[], bool] = lambda: False) -> Iterator[dict[str, Any]]:
    """Yield events as they arrive, for ``timeout`` seconds or until ``stopped()``."""
    received: list[dict[str, Any]] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    with app.connection() as connection:
        queue = event_queue(connection)
        with kombu.Consumer(connection.default_channel, queues=[queue], accept=["json"],
                            no_ack=True, callbacks=[lambda body, _msg: received.append(body)]):
            while not stopped() and (deadline is None or time.monotonic() < deadline):
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
                while received:
                    yield received.pop(0)


def dump_events(app: App, write: Callable[[str], Any], timeout: float | None = None) -> None:
    """Print each event as one line, as ``celery events --dump`` does."""
    for event in stream_events(app, timeout=timeout):
        write(events.describe_event(event))


def worker_statuses(now: datetime | None = None) -> list[WorkerWithStatus]:
    """Every Worker row, its ``status`` computed (online, offline, lost)."""
    rows = Worker.objects.using(router.db_for_read(Worker)).with_status(now or timezone.now())
    return list(rows.order_by("hostname"))


def describe_workers(rows: list[WorkerWithStatus], now: datetime | None = None) -> list[str]:
    """One line per worker: hostname, status, heartbeat age, counters; then a total."""
    now = now or timezone.now()
    lines = [f"{row.hostname}: {row.status}, last heartbeat {row.heartbeat_age(now):.1f}s ago, "
             f"pid {row.pid}, {row.pool} x{row.concurrency}, queues {','.join(row.queues)}, "
             f"processed {row.processed}, failed {row.failed}, active {row.active}"
             for row in rows]
    online = sum(1 for row in rows if row.status == "online")
    lines.append(f"{online} of {len(rows)} known workers online.")
    return lines
