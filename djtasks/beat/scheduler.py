"""Schedulers: decide which periodic runs are due and send them (processes layer).

Beat only publishes: a due run is sent exactly as ``apply_async`` would send it (routing,
options, expiry) and a worker runs it. One loop (``tick``): hold the lease, read the
enabled entries, claim and send each due run, and return how long to sleep.

Missed runs: after downtime an entry that missed several runs is sent once, not once per
missed run (as Celery does); its next run follows the schedule from then on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import DatabaseError, close_old_connections, router, transaction
from django.utils import timezone

from djtasks.application import App
from djtasks.backends.fork_safety import DATABASE_WRITES
from djtasks.backends.outages import Outage
from djtasks.beat.lease import Lease
from djtasks.beat.stores import DatabaseStore, Entry
from djtasks.models import PeriodicTask
from djtasks.protocol import new_task_id
from djtasks.result import AsyncResult
from djtasks.transport.aliases import broker_alias

logger = logging.getLogger("djtasks.beat")
#: The shortest sleep between two loops, so that a schedule due "now" cannot spin.
MIN_SLEEP = 0.01


class BaseScheduler(ABC):
    """The loop every scheduler shares; subclasses say what one ``tick`` does."""

    def __init__(self, app: App, max_interval: float | None = None,
                 clock: Callable[[], datetime] = timezone.now) -> None:
        self.app = app
        self.max_interval = max_interval or app.settings.beat_max_loop_interval
        self.clock = clock

    def setup(self) -> None:  # noqa: B027 - an optional hook
        """Prepare before the first tick (a no-op by default)."""

    @abstractmethod
    def tick(self) -> float:
        """Send what is due now; return the seconds to sleep before the next tick."""

    def close(self) -> None:  # noqa: B027 - an optional hook
        """Release what the scheduler holds (a no-op by default)."""

    #: The database the scheduler writes to (None: none), for backends.fork_safety.
    db: str | None = None

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set. An error in one tick is logged; the next tick retries.

        A database error (locked, restarted, gone) is waited out with backoff, logged once
        per incident; past ``database_retry_timeout`` DatabaseUnavailable ends the loop.
        """
        outage = Outage("beat", self.app.settings.database_retry_timeout, log=logger)
        prepared = False
        try:
            while not stop.is_set():
                # Beat may run in a thread of a worker (-B), which forks: backends.fork_safety.
                with DATABASE_WRITES.writing(self.db):
                    try:
                        if not prepared:  # several beats starting at once write the same rows
                            self.setup()
                            prepared = True
                        pause = self.tick()
                        outage.succeeded()
                    except DatabaseError as exc:
                        pause = outage.failed(exc)
                    except Exception:
                        logger.exception("beat: the scheduler's loop failed; trying again")
                        close_old_connections()
                        pause = self.max_interval
                stop.wait(max(MIN_SLEEP, min(pause, self.max_interval)))
        finally:
            with DATABASE_WRITES.writing(self.db):
                self.close()


class DatabaseScheduler(BaseScheduler):
    """Entries from the PeriodicTask table; one leader among any number of beats."""

    def __init__(self, app: App, max_interval: float | None = None,
                 clock: Callable[[], datetime] = timezone.now, holder: str | None = None) -> None:
        super().__init__(app, max_interval, clock)
        self.store = DatabaseStore(app)
        holder = holder or f"beat-{os.getpid()}@{socket.gethostname()}"
        self.lease = Lease(holder, app.settings.beat_lease_timeout, clock=clock)
        self.db = router.db_for_write(PeriodicTask)
        # On django:// over the schedule's own database, a publish is a row in the claim's
        # transaction: both commit or neither does.
        self.publish_joins_claim = broker_alias(app.settings.broker_url) == self.db

    def setup(self) -> None:
        names = self.store.sync_static()
        logger.info("beat: %d entries from settings and code written to the database", len(names))

    def tick(self) -> float:
        was_leader = self.lease.held
        # Renew well before the lease runs out, whatever the schedule says.
        renew_within = self.lease.timeout / 3
        if not self.lease.acquire():
            if was_leader:
                logger.warning("beat: %s lost the lead", self.lease.holder)
            return renew_within
        if not was_leader:
            logger.info("beat: %s is the leader; sending periodic tasks", self.lease.holder)
        now = self.clock()
        pause = min(self.max_interval, renew_within)
        for entry in self.store.enabled_entries():
            pause = min(pause, self.consider(entry, now))
        return pause

    def consider(self, entry: Entry, now: datetime) -> float:
        """Send ``entry`` if it is due at ``now``; return the seconds until it next needs a look."""
        if entry.start_time is not None and now < entry.start_time:
            return (entry.start_time - now).total_seconds()
        if entry.expires is not None and now >= entry.expires:
            return self.max_interval
        due, next_check = entry.schedule.is_due(entry.since, now)
        if due:
            self.send(entry, now)
        return next_check

    def send(self, entry: Entry, now: datetime) -> bool:
        """Claim the run and publish it; False if another beat had it or the publish failed.

        A run is sent at most once. With the django:// broker on the schedule's database the
        publish is part of the claim's transaction (exactly once). With another broker the
        claim commits first and the publish follows: a publish that fails gives the claim
        back, so the run stays due; a claim that could not commit never published.
        """
        # The id is chosen before the claim, which records it: the row names its last run's
        # result without a second write.
        task_id = new_task_id()
        if self.publish_joins_claim:
            with transaction.atomic(using=self.db):
                if not self.store.claim(entry, now, task_id):
                    return False
                return self.publish(entry, now, task_id, give_back=False)
        if not self.store.claim(entry, now, task_id):
            return False
        return self.publish(entry, now, task_id, give_back=True)

    def publish(self, entry: Entry, now: datetime, task_id: str, give_back: bool) -> bool:
        logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        try:
            send_run(self.app, entry, now, task_id)
        except DatabaseError:
            raise  # the claim's transaction is broken too: the loop waits the outage out
        except Exception:
            logger.exception("beat: could not send %s (%s); it stays due", entry.name, entry.task)
            if give_back:
                self.store.unclaim(entry, now)
            else:
                transaction.set_rollback(True, using=self.db)
            return False
        return True

    def close(self) -> None:
        try:
            self.lease.release()
        except DatabaseError as exc:  # it expires by itself
            logger.warning("beat: could not give the lease up (%s); it expires in %g s",
                           exc, self.lease.timeout)
        close_old_connections()


def send_run(app: App, entry: Entry, now: datetime, task_id: str) -> AsyncResult:
    """Publish one run of ``entry`` at ``now`` as ``task_id``: the one way a run is sent.

    Beat's due runs and the console's "run now" both come here, so a run sent by hand has
    the same arguments, routing and expiry as one beat sends.
    """
    return app.send_task(entry.task, entry.args, entry.kwargs, task_id=task_id,
                         **send_options(entry, now))


def run_now(app: App, row: PeriodicTask, now: datetime) -> AsyncResult:
    """Send one run of ``row`` now, outside its schedule, and record it as its last run.

    The schedule is left alone (``last_run_at`` and the run count are beat's): the next
    due run comes when it would have come.
    """
    entry = DatabaseStore(app).entry(row)
    result = send_run(app, entry, now, new_task_id())
    PeriodicTask.objects.record_sent(row.pk, result.id)
    return result


def next_run_at(entry: Entry, now: datetime) -> datetime | None:
    """Return when beat will next send ``entry`` (``now`` when it is due): None if never."""
    if entry.start_time is not None and now < entry.start_time:
        now = entry.start_time  # beat looks first then, and reads the schedule from there
    if entry.expires is not None and now >= entry.expires:
        return None
    due_at = entry.schedule.due_at(entry.since, now)
    if due_at is None or (entry.expires is not None and due_at >= entry.expires):
        return None
    return max(due_at, now)


def send_options(entry: Entry, now: datetime) -> dict:
    """Return the apply_async options of one run of ``entry``."""
    options = dict(entry.options)
    expiries = [moment for moment in (
        entry.expires,
        now + timedelta(seconds=entry.expire_seconds) if entry.expire_seconds else None,
    ) if moment is not None]
    if expiries:
        options["expires"] = min(expiries)
    return options
