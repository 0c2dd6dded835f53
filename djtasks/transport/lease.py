"""Lease-based acknowledgement for the django:// transport: QoS and lease renewal (storage layer).

A taken message stays in its table with ``visible_at`` in the future. The channel renews
the leases it holds from a thread of its own, so that a task that runs longer than the
visibility timeout, or a worker busy in a long task on the solo pool, keeps its messages;
only a consumer that stopped renewing (its process died) loses them to another.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError
from kombu.transport import virtual

from djtasks.backends.fork_safety import DATABASE_WRITES
from djtasks.backends.outages import Outage, close_quietly

logger = logging.getLogger(__name__)


class LeaseQoS(virtual.QoS):
    """kombu's QoS with rows that stay in the table until acknowledged.

    kombu's virtual QoS assumes ``_get`` removed the message and puts it back on
    restore; here ``ack`` deletes the row, ``reject`` deletes or requeues it, and
    restore makes the leased rows visible again.
    """

    def ack(self, delivery_tag: Any) -> None:
        self.channel._ack(delivery_tag)
        self._quick_ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        self.channel._finish(delivery_tag, requeue=requeue)
        self._quick_ack(delivery_tag)

    def restore_unacked(self) -> list:
        """Make every delivered, unacknowledged message visible again (basic_recover)."""
        self._flush()
        tags = list(self._delivered)
        self._delivered.clear()
        self.channel._restore_delivered(tags)
        return []

    def restore_unacked_once(self, stderr: Any = None) -> None:
        """Give back every leased row of the channel at close or collection; only once.

        The rows are still in the table, so a failure here loses nothing: their leases
        run out and they are delivered again. It is logged and not raised, as it runs
        from close() and from finalizers.
        """
        self._on_collect.cancel()
        self._flush()
        state = self._delivered
        if getattr(state, "restored", False):
            return
        try:
            restore = self.restore_at_shutdown and self.channel.do_restore
            self.channel._release_leases(restore_delivered=restore)
        except DatabaseError:
            logger.exception("djtasks transport: could not give back leased messages")
        finally:
            state.clear()
            # kombu's own flag on its _delivered mapping (QoS.restore_unacked_once reads it).
            state.restored = True  # type: ignore[attr-defined]


class Renewer:
    """A daemon thread that calls ``renew`` every ``interval`` seconds until stopped.

    It also deletes acked rows that the consumer left pending: ``flush_soon`` asks it to
    call ``flush`` after ``flush_delay`` seconds, time for the consumer's own next fetch
    or wait to carry them, which costs no round trip of their own.

    It works on its own Django connection (connections are per thread) and closes it
    after every use: renewals are minutes apart, and a connection held between them
    would be inherited by every pool process the worker forks meanwhile, whose cleanup
    could close the socket under this thread.
    """

    def __init__(self, alias: str, renew: Callable[[], None], interval: float, *,
                 flush: Callable[[], bool] | None = None, flush_delay: float = 0.05) -> None:
        self._alias = alias
        self._renew = renew
        self._interval = interval
        self._flush = flush
        self._flush_delay = flush_delay
        self._stopped = threading.Event()
        self._flush_wanted = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"djtasks-lease-renewer-{alias}", daemon=True
        )
        self._thread.start()

    def flush_soon(self) -> None:
        """Flush acked rows within ``flush_delay`` seconds, unless the consumer does first."""
        self._flush_wanted.set()

    def stop(self) -> None:
        """Stop renewing and wait for the thread to finish."""
        self._stopped.set()
        self._flush_wanted.set()  # wakes the thread at once
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        # Never ends but by stop(): a thread that died here would let every lease lapse
        # and the messages run twice. A failed renewal is tried again next interval (the
        # lease is a third of the way used), logged once per incident.
        outage = Outage("djtasks transport: lease renewal", None, log=logger)
        renew_at = time.monotonic() + self._interval
        try:
            while not self._stopped.is_set():
                if self._flush_wanted.wait(max(renew_at - time.monotonic(), 0.0)):
                    if self._stopped.wait(self._flush_delay):
                        break
                    self._flush_wanted.clear()
                    if self._flush is not None:
                        self._work(self._flush, outage)
                if time.monotonic() >= renew_at and not self._stopped.is_set():
                    self._work(self._renew, outage)
                    renew_at = time.monotonic() + self._interval
        finally:
            with DATABASE_WRITES.writing(self._alias):
                close_quietly(self._alias)

    def _work(self, work: Callable[[], object], outage: Outage) -> None:
        # The work and the close after it (a write too: SQLite checkpoints) hold forks
        # off: see backends.fork_safety.
        with DATABASE_WRITES.writing(self._alias):
            try:
                work()
                outage.succeeded()
            except DatabaseError as exc:
                outage.failed(exc)  # acks not deleted are kept: the next ack or renewal retries
            except Exception:
                logger.exception("djtasks transport: could not renew leases or delete acked rows")
            finally:
                close_quietly(self._alias)
