"""EtaRelease: send parked messages back to their queues when due, and stranded outbox rows (processes layer).

Every worker runs one, in a thread of its main process: a thread rather than a step of the
consumer's loop, because that loop blocks while the solo pool runs a task and is busy
when messages flood in, and a release must not wait for either. Only the worker holding
the ``eta-release`` lease (a row of the beat lease table) releases, so a parked message is
sent back once however many workers run; another worker takes over within ``LEASE``
seconds of the holder's death.

Order: publish, then delete, in one database transaction. A crash in between sends the
message again (at least once). On ``django://``, when the parked rows and the queue share a
database, the publish joins that transaction (as any publish does): exactly once.
A message is released ``HOLD`` before its eta, eta header unchanged: the consumer holds it
for that last moment, and on ``django://`` it stays invisible until due.

The lease holder also sends the outbox rows that their publisher committed and did not send
(``Publisher.relay_stranded``): kept work that waits in the database for one sender, as a
parked message does.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime

import kombu
from django.db import DatabaseError, router, transaction
from django.utils import timezone

from djtasks.application import App
from djtasks.backends.base import exception_to_dict
from djtasks.backends.fork_safety import DATABASE_WRITES
from djtasks.backends.outages import TRANSIENT_ERRORS, Outage, close_quietly
from djtasks.beat.lease import Lease
from djtasks.exceptions import DjtasksError
from djtasks.models import DeadLetter, ParkedMessage
from djtasks.publish import republish
from djtasks.utils.log import loggable
from djtasks.worker.eta import HOLD

logger = logging.getLogger("djtasks.worker")

#: Seconds between two looks at the parked messages.
INTERVAL = 1.0
#: Seconds the release lease lasts unless renewed (it is renewed every INTERVAL).
LEASE = 10.0
#: Most messages released per transaction.
BATCH = 500


class EtaRelease:
    """Release the due parked messages of every worker, while this one holds the lease."""

    def __init__(self, app: App, hostname: str, interval: float = INTERVAL,
                 clock: Callable[[], datetime] = timezone.now) -> None:
        self.app = app
        self.hostname = hostname
        self.interval = interval
        self.clock = clock
        self.db = router.db_for_write(ParkedMessage)
        self._lease: Lease | None = None
        self._connection: kombu.Connection | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lease(self) -> Lease:
        if self._lease is None:  # the pid of the process that releases, not of its parent
            self._lease = Lease(f"{self.hostname} pid {os.getpid()}", LEASE, name="eta-release",
                                clock=self.clock)
        return self._lease

    # -- the thread ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="djtasks-eta-release", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop releasing, give the lease up, and close the broker connection."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        # The thread never gives up: a database or broker that is away is waited out, one
        # log line per incident, and the consumer's loop decides whether the worker stops.
        outage = Outage("eta release", None, log=logger)
        try:
            while not self._stopped.wait(self.interval):
                self._stopped.wait(self._round(outage))
        finally:
            with DATABASE_WRITES.writing(self.db):
                self._shut_down()

    def _round(self, outage: Outage) -> float:
        """Release what is due, then close the connection; return how long to back off.

        Closing is a write too (SQLite checkpoints): both hold forks off (backends.fork_safety).
        """
        with DATABASE_WRITES.writing(self.db):
            try:
                self.run_once()
                outage.succeeded()
            except DatabaseError as exc:
                return outage.failed(exc)
            except Exception:  # the broker is away: next round tries again
                logger.exception("eta release: could not release parked messages")
                self._drop_connection()
            finally:
                # Between rounds hold no database connection: a pool process forked
                # meanwhile would inherit it (see transport.lease.Renewer).
                close_quietly(self.db)
        return 0.0

    # -- one round -------------------------------------------------------------------------
    def run_once(self) -> int:
        """Release what is due if this worker holds the lease; return how many were sent."""
        now = self.clock()
        # A read first: an idle fleet then writes nothing (the lease is taken only for work).
        parked = ParkedMessage.objects.using(self.db).due(now + HOLD, now).exists()
        stranded = self.app.publisher.any_stranded(now)
        if not (parked or stranded) or not self.lease.acquire():
            return 0
        released = 0
        while parked and not self._stopped.is_set():
            sent = self.release_batch()
            released += sent
            if sent < BATCH:
                break
        if released:
            logger.info("eta release: %d parked message(s) sent back to their queues", released)
        if stranded:  # outbox rows their publisher left behind: the same lease sends them
            released += self.app.publisher.relay_stranded(now, BATCH)
        return released

    def release_batch(self) -> int:
        """Publish up to BATCH due parked messages, then delete them; return how many.

        A row that cannot be sent (its stored properties are broken, say) is dead-lettered,
        its result fails with the reason, and the others go on; a broker error stops the
        batch, to be tried again next round. The eta and expiry are not read back: the
        headers carry them, and a row holding one that does not convert must not stop the
        batch either.
        """
        now = self.clock()
        connection = self.connection()
        broker_errors = connection.connection_errors + connection.channel_errors
        with transaction.atomic(using=self.db):
            rows = list(ParkedMessage.objects.using(self.db).due(now + HOLD, now)
                        .select_for_update(skip_locked=True).order_by("eta")
                        .defer("eta", "expires")[:BATCH])
            if not rows:
                return 0
            producer = kombu.Producer(connection.default_channel)
            for row in rows:
                try:
                    # A savepoint: on django:// the publish is a row in this database, and
                    # one that fails must not abort the batch's transaction with it.
                    with transaction.atomic(using=self.db):
                        republish(producer, row)
                except (*broker_errors, *TRANSIENT_ERRORS):
                    raise  # the broker or database is away: the whole batch waits
                except Exception as exc:
                    self.dead_letter(row, exc)
            ParkedMessage.objects.using(self.db).filter(pk__in=[row.pk for row in rows]).delete()
        return len(rows)

    def dead_letter(self, row: ParkedMessage, exc: Exception) -> None:
        """Keep a parked message that cannot be sent back as a DeadLetter; fail its result."""
        reason = f"a parked message that cannot be sent back to its queue: {type(exc).__name__}: {exc}"
        logger.error("eta release: task %s[%s] dead-lettered: %s", loggable(row.task_name),
                     loggable(row.task_id), loggable(reason, 1000))
        DeadLetter.objects.using(self.db).keep_unreadable(
            f"headers: {row.headers!r}\nproperties: {row.properties!r}\nbody: {bytes(row.body)!r}",
            reason, reason_code="not_sendable", task_id=row.task_id, task_name=row.task_name,
            queue=row.queue, worker=self.hostname,
            keep_at_most=self.app.settings.dead_letter_max_count)
        try:
            self.app.backend.fail_unless_ready(row.task_id, exception_to_dict(DjtasksError(reason)))
        except Exception:
            logger.exception("eta release: could not store the failure of %s", loggable(row.task_id))

    def connection(self) -> kombu.Connection:
        """Return this releaser's broker connection (its own: the consumer's is not thread-safe)."""
        if self._connection is None:
            self._connection = self.app.connection()
            self._connection.ensure_connection(max_retries=1)
        return self._connection

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # broken already; a new one is made next round
                logger.debug("eta release: error while closing the connection", exc_info=True)

    def _shut_down(self) -> None:
        try:
            self.lease.release()
        except DatabaseError:  # it expires by itself
            logger.exception("eta release: could not give the lease up")
        finally:
            close_quietly(self.db)
            self._drop_connection()

