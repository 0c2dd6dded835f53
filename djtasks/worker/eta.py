"""EtaGate: what the consumer does with a task message that is not due yet (processes layer).

A message whose eta is more than ``HOLD`` seconds away is parked: written to the
ParkedMessage table as received (still encoded) and then acknowledged, so no worker keeps
it in memory, or in its prefetch window, for the wait. The worker that holds the release
lease sends it back to its queue when it is due (``worker/release.py``). A message due
within ``HOLD`` seconds is held here, unacknowledged, and handed to the pool when due.

On ``django://`` a message with an eta is invisible until due, so it reaches a worker
early only when clocks disagree; it is parked all the same and never runs early.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import kombu
from django.db import DatabaseError, router
from django.utils import timezone

from djtasks.models import ParkedMessage
from djtasks.task import Request
from djtasks.worker.received import as_received

logger = logging.getLogger("djtasks.worker")

#: A message due within this many seconds is held in memory rather than parked; the release
#: loop sends parked messages back this long before their eta, so that they run on time.
HOLD = timedelta(seconds=1)

Clock = Callable[[], datetime]
Reserved = tuple[Request, kombu.Message]


class EtaGate:
    """Park or hold the consumer's messages that are due later; give back the held ones when due."""

    def __init__(self, queues: Sequence[kombu.Queue], clock: Clock = timezone.now) -> None:
        self.queues = list(queues)
        self.clock = clock
        self._held: list[tuple[datetime, int, Request, kombu.Message]] = []
        self._order = itertools.count()  # ties in the heap compare this, never the requests

    @property
    def holding(self) -> bool:
        """Whether messages wait here (the consumer then polls the broker briefly)."""
        return bool(self._held)

    def defer(self, request: Request, message: kombu.Message) -> bool:
        """Take ``request`` if it is not due yet (park or hold it); False when it may run now.

        An expired message is never deferred: the consumer marks it expired at once.
        """
        eta, expires, now = request.message.eta, request.message.expires, self.clock()
        if eta is None or eta <= now or (expires is not None and expires <= now):
            return False
        if eta - now > HOLD:
            try:
                park(message, request, source_queue(message.delivery_info, self.queues))
            except (DatabaseError, TypeError, ValueError, OverflowError):
                # Better held in memory (Celery's way) than lost or refused: it still runs.
                logger.exception("Task %s could not be parked; held in memory until %s",
                                 request.label, eta.isoformat())
            else:
                message.ack()
                logger.info("Task %s parked until %s", request.label, eta.isoformat())
                return True
        heapq.heappush(self._held, (eta, next(self._order), request, message))
        return True

    def held(self) -> list[tuple[datetime, Request, kombu.Message]]:
        """Return the messages held here, each with its eta, in eta order (inspect)."""
        return [(eta, request, message) for eta, _n, request, message in sorted(self._held)]

    def due(self) -> list[Reserved]:
        """Return the held messages whose eta has come, in eta order."""
        now, ready = self.clock(), []
        while self._held and self._held[0][0] <= now:
            _eta, _n, request, message = heapq.heappop(self._held)
            ready.append((request, message))
        return ready

    def take_all(self) -> list[Reserved]:
        """Return every held message (at shutdown, to give back to the broker)."""
        held, self._held = sorted(self._held), []
        return [(request, message) for _eta, _n, request, message in held]

    def forget(self) -> None:
        """Drop the held messages: their channel died and the broker delivers them again."""
        self._held.clear()


def park(message: kombu.Message, request: Request, queue: str) -> ParkedMessage:
    """Write ``message`` to the ParkedMessage table, once even if it is delivered twice."""
    task = request.message
    assert task.eta is not None, "only a message with an eta is parked"
    row = ParkedMessage(task_id=task.id, task_name=task.task, eta=task.eta, expires=task.expires,
                        **as_received(message, queue, task.priority))
    db = router.db_for_write(ParkedMessage)
    ParkedMessage.objects.using(db).bulk_create([row], ignore_conflicts=True)
    return row


def source_queue(delivery_info: Any, queues: Sequence[kombu.Queue]) -> str:
    """Return the queue a message came from, or "" when the delivery does not tell.

    Going back through the default exchange to that queue reaches that queue alone: through
    its exchange, a topic or fanout one would copy it into every other bound queue again.
    """
    exchange = (delivery_info or {}).get("exchange") or ""
    routing_key = (delivery_info or {}).get("routing_key") or ""
    if not exchange:
        return routing_key
    named = [q.name for q in queues if q.exchange.name == exchange and q.routing_key == routing_key]
    if len(named) == 1:
        return named[0]
    # One queue consumed and bound to that exchange by a pattern (topic) or none (fanout):
    # the message came from it. Only then: a direct exchange's key must match, as above.
    if (len(queues) == 1 and queues[0].exchange.name == exchange
            and queues[0].exchange.type != "direct"):
        return queues[0].name
    return ""
