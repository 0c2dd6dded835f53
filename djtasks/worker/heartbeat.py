"""The worker's heartbeat: worker-* events and its Worker row, on a thread of its own (processes layer).

Every ``worker_heartbeat_interval`` seconds the thread queues a ``worker-heartbeat`` event
(Celery's fields: ``freq``, ``active``, ``processed``, ``loadavg``, ``sw_ident``...) and
upserts the worker's ``Worker`` row in one statement. It never runs on the task path: the
main process only bumps the counters of ``WorkerStats``. A database error is waited out
(logged once per outage, as other loops do) and the next beat tries again; the thread
itself never gives up.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from django.db import connections, router
from django.utils import timezone

from djtasks.backends.fork_safety import DATABASE_WRITES
from djtasks.backends.outages import Outage
from djtasks.models import Worker
from djtasks.models.workers import OFFLINE, ONLINE, lost_after
from djtasks.utils import events
from djtasks.worker.events import EventSender

logger = logging.getLogger("djtasks.worker")


def software_version() -> str:
    try:
        return version("djtasks")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class WorkerStats:
    """Counters the main process bumps and the heartbeat thread and ``stats`` read.

    Only the main thread writes them, and a reader needs no more than a recent value.
    """

    processed: int = 0
    failed: int = 0
    active: int = 0
    #: Task name -> executions started (``inspect stats``'s ``total``).
    totals: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class WorkerInfo:
    hostname: str
    pool: str
    concurrency: int
    queues: Sequence[str]


class Heartbeat:
    """Send the worker-* events and keep the Worker row of one worker."""

    def __init__(self, info: WorkerInfo, sender: EventSender, stats: WorkerStats,
                 interval: float) -> None:
        self.info = info
        self.sender = sender
        self.stats = stats
        self.interval = max(float(interval), 0.05)
        self.version = software_version()
        self.started = timezone.now()
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = Outage("heartbeat", None, log=logger)
        self._first = True

    def start(self) -> None:
        self.sender.emit("worker-online", **self.fields())
        self._thread = threading.Thread(target=self._run, name="djtasks-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, offline: bool = True) -> None:
        """Stop beating; with ``offline`` (a warm shutdown) say so, in an event and the row."""
        self._stop.set()
        if self._thread is None:
            return  # never started (the broker was not reached): nothing to take back
        self._thread.join(self.interval + 5)
        self._thread = None
        if offline:
            self.sender.emit("worker-offline", **self.fields())
            self.report(OFFLINE)

    def beat_now(self) -> None:
        """Send a worker-heartbeat now (the ``heartbeat`` control command)."""
        self.sender.emit("worker-heartbeat", **self.fields())

    def fields(self) -> dict:
        return {"freq": self.interval, "active": self.stats.active,
                "processed": self.stats.processed, "loadavg": events.load_average(),
                **events.software_info(self.version)}

    def _run(self) -> None:
        try:
            self.report(ONLINE)
            while not self._stop.wait(self.interval):
                self.beat_now()
                self.report(ONLINE)
        finally:
            # A close is a write too (backends.fork_safety).
            with DATABASE_WRITES.writing(router.db_for_write(Worker)):
                connections.close_all()  # this thread's own connections

    def report(self, status: str, now: datetime | None = None) -> bool:
        """Upsert the Worker row in one statement; return whether the database took it."""
        now = now or timezone.now()
        row = Worker(hostname=self.info.hostname, pid=self.pid, host=socket.gethostname(),
                     pool=self.info.pool, concurrency=self.info.concurrency,
                     queues=list(self.info.queues), software=f"djtasks {self.version}",
                     started=self.started, last_heartbeat=now, heartbeat_interval=self.interval,
                     lost_after=lost_after(now, self.interval), written_status=status,
                     processed=self.stats.processed, failed=self.stats.failed,
                     active=self.stats.active)
        try:
            with DATABASE_WRITES.writing(router.db_for_write(Worker)):
                Worker.objects.using(router.db_for_write(Worker)).report(row, first=self._first)
        except Exception as exc:  # never the worker's problem: the next beat tries again
            self._outage.failed(exc)
            return False
        self._first = False
        self._outage.succeeded()
        return True
