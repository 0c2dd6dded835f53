"""The ``django://`` kombu transport: queues in a table of a Django database (storage layer).

``django://`` uses the database alias ``default``; ``django://<alias>`` uses that alias.
Messages are rows of ``djtasks.models.QueueMessage``.

=====================================  ====================  ==========================
feature                                PostgreSQL            SQLite (WAL advised)
=====================================  ====================  ==========================
priorities 0-9, higher first, FIFO     yes                   yes
acks: lease, renewed while alive       yes                   yes
acks deleted in batches                with the next fetch   just before the next fetch
redelivery when a consumer died        after the lease       after the lease
restore on close                       yes                   yes
concurrent consumers                   FOR UPDATE SKIP       one short write per batch
                                       LOCKED
idle consumer wake-up                  LISTEN/NOTIFY         polling, 5 ms doubling to
                                                             ``polling_interval``
publish in the caller's transaction    yes                   yes
task eta: invisible until due          yes                   yes
direct and topic exchanges             yes; bindings in a table shared by every process
                                       (``QueueBinding``); each process routes by its own
                                       first, the table only when they name no queue
fanout exchanges                       yes: one copy per     yes
                                       bound queue
queue size, purge                      yes                   yes
=====================================  ====================  ==========================

Transport options (``broker_transport_options``):

- ``visibility_timeout`` (1800): seconds a taken message stays invisible unless its
  consumer renews the lease; the channel renews every third of it.
- ``polling_interval`` (1.0): longest sleep of an idle consumer between polls; on
  PostgreSQL, how long it waits for a NOTIFY before it polls anyway.
- ``fetch_limit`` (100): most rows one fetch leases, below the prefetch window.
- ``listen_notify`` (True): use LISTEN/NOTIFY on PostgreSQL.
- ``ack_flush_delay`` (0.05): longest wait, in seconds, before acked rows that no fetch
  or wait took along are deleted by the lease renewer's thread.

Acks are batched: an ack marks its row done and stops renewing it; the rows are deleted
together, in the consumer's next fetch (on PostgreSQL, in the same statement), before it
waits for messages, before a lease renewal, at close, after ``ack_flush_delay``, or once
32 are pending. A worker killed (``kill -9``, a power cut) between an ack and that delete
leaves those rows in the table: each is delivered again after the visibility timeout.
Delivery stays at least once, as for any message whose consumer died; a graceful
shutdown deletes them all. Rejects and requeues are written at once.
"""

from __future__ import annotations

from queue import Empty
from time import monotonic
from typing import Any

import django
import psycopg
from django.db import InterfaceError, OperationalError, connections
from kombu.transport import virtual

from djtasks.exceptions import ImproperlyConfigured
from djtasks.transport.aliases import database_alias
from djtasks.transport.channel import Channel
from djtasks.transport.wakeup import Listener, Waiter


class Transport(virtual.Transport):
    """kombu transport ``django://[alias]``; see the module docstring for its options."""

    Channel = Channel
    driver_type = "sql"
    driver_name = "django"
    polling_interval = 1.0
    implements = virtual.Transport.implements.extend(
        asynchronous=False, exchange_type=frozenset(["direct", "topic", "fanout"]), heartbeats=False
    )
    # kombu annotates connection_errors as a one-item tuple; it is any tuple of exception types.
    connection_errors = (  # type: ignore[assignment]
        *virtual.Transport.connection_errors,
        OperationalError,
        InterfaceError,
        psycopg.OperationalError,
    )

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = client.transport_options
        self.alias = database_alias(client.hostname)
        self.visibility_timeout = _positive(options, "visibility_timeout", 1800.0)
        self.polling_interval = _positive(options, "polling_interval", self.polling_interval)
        self.fetch_limit = int(_positive(options, "fetch_limit", 100))
        self.ack_flush_delay = _positive(options, "ack_flush_delay", 0.05)
        self.notify = bool(options.get("listen_notify", True)) and (
            connections[self.alias].vendor == "postgresql"
        )
        self.waiter = Waiter(self.polling_interval, listener=None)

    def driver_version(self) -> str:
        return django.get_version()

    def establish_connection(self) -> Transport:
        db = connections[self.alias]
        # kombu reconnects after a connection error: drop a Django connection that the
        # error broke (Django would keep failing on it), never one inside a transaction,
        # and never a healthy one (close_if_unusable_or_obsolete would also close a
        # connection merely past CONN_MAX_AGE, in the middle of a request).
        if db.connection is not None and db.errors_occurred and not db.in_atomic_block:
            if db.is_usable():
                db.errors_occurred = False
            else:
                db.close()
        return super().establish_connection()

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)
        finally:
            self.waiter.close()

    # kombu's base declares **kwargs; its callers pass timeout alone, as here.
    def drain_events(self, connection: Any, timeout: float | None = None) -> None:  # type: ignore[override]
        """Deliver one message; wait on NOTIFY or back off while there is none.

        Raises ``TimeoutError`` (``socket.timeout``) when ``timeout`` seconds pass.
        """
        deadline = None if timeout is None else monotonic() + timeout
        assert self.cycle is not None, "kombu sets the cycle when the transport is created"
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                for channel in self.channels:
                    channel.forget_empty_queues()
                    channel.flush_acks()  # nothing to fetch them with: delete before waiting
                if self._listen():
                    continue  # a publish before LISTEN took effect sent us nothing
                remaining = None if deadline is None else deadline - monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError() from None
                self.waiter.wait(remaining, can_consume=self._can_consume())
                # No last look once the time is up: a message that came unannounced
                # during the wait is taken by the next call.
                if deadline is not None and monotonic() >= deadline:
                    raise TimeoutError() from None
            else:
                self.waiter.backoff.reset()
                return

    def _listen(self) -> bool:
        if not self.notify:
            return False
        if self.waiter.listener is None:
            params = connections[self.alias].get_connection_params()
            self.waiter.listener = Listener(params, retry_after=self.polling_interval)
        queues = {queue for channel in self.channels for queue in channel._active_queues}
        return self.waiter.listener.listen(queues)

    def _can_consume(self) -> bool:
        return any(ch._consumers and ch.qos.can_consume() for ch in self.channels)

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # No default host name: ``django://`` is complete as written (the default alias),
        # and kombu warns "No hostname was supplied" when a transport offers one.
        return {"port": None}


def _positive(options: dict[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ImproperlyConfigured(
            f"broker_transport_options[{key!r}]: expected a positive number, got {value!r}"
        )
    return float(value)
