"""Lease-based acknowledgement for the django:// transport: QoS and lease renewal (storage layer).

A taken message stays in its table with ``visible_at`` in the future. The channel renews
the leases it holds from a thread of its own, so that a task that runs longer than the
visibility timeout, or a worker busy in a long task on the solo pool, keeps its messages;
only a consumer that stopped renewing (its process died) loses them to another.
"""

from __future__ import annotations

import logging
import threading
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
        self.channel._finish(delivery_tag, requeue=False)
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

    It works on its own Django connection (connections are per thread) and closes it
    after every renewal: renewals are minutes apart, and a connection held between them
    would be inherited by every pool process the worker forks meanwhile, whose cleanup
    could close the socket under this thread.
    """

    def __init__(self, alias: str, renew: Callable[[], None], interval: float) -> None:
        self._alias = alias
        self._renew = renew
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"djtasks-lease-renewer-{alias}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and wait for the thread to finish."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        # Never ends but by stop(): a thread that died here would let every lease lapse
        # and the messages run twice. A failed renewal is tried again next interval (the
        # lease is a third of the way used), logged once per incident.
        outage = Outage("djtasks transport: lease renewal", None, log=logger)
        try:
            while not self._stopped.wait(self._interval):
                # The renewal and the close after it (a write too: SQLite checkpoints)
                # hold forks off: see backends.fork_safety.
                with DATABASE_WRITES.writing(self._alias):
                    try:
                        self._renew()
                        outage.succeeded()
                    except DatabaseError as exc:
                        outage.failed(exc)
                    except Exception:
                        logger.exception("djtasks transport: could not renew leases")
                    finally:
                        close_quietly(self._alias)
        finally:
            with DATABASE_WRITES.writing(self._alias):
                close_quietly(self._alias)
