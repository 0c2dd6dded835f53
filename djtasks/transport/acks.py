"""Acknowledged django:// rows waiting to be deleted in one statement (storage layer).

Deleting each acked row on its own costs a round trip per message, about half of a
worker's main thread on PostgreSQL. The channel collects the deliveries (row id and
delivery count, see ``statements.Statements``) here instead and
deletes them together: with its next fetch, before it waits for messages, before a lease
renewal, at close, or when ``MAX_PENDING_ACKS`` of them have gathered.
"""

from __future__ import annotations

import threading

from djtasks.transport.statements import Delivery

#: Acks that make the channel delete at once: bounds how many messages a worker killed
#: with -9 may see delivered again (each after its visibility timeout).
MAX_PENDING_ACKS = 32


class PendingAcks:
    """Deliveries acked by the application but still in the table; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[Delivery] = []

    def add(self, delivery: Delivery) -> int:
        """Record an ack; return how many are pending now."""
        with self._lock:
            self._ids.append(delivery)
            return len(self._ids)

    def take(self) -> list[Delivery]:
        """Return every pending delivery and forget them (the caller deletes them)."""
        with self._lock:
            ids, self._ids = self._ids, []
        return ids

    def put_back(self, deliveries: list[Delivery]) -> None:
        """Keep deliveries whose delete failed, to be tried with the next flush."""
        if deliveries:
            with self._lock:
                self._ids[:0] = deliveries

    def __len__(self) -> int:
        return len(self._ids)
