"""Never fork while another thread of the process writes to an SQLite database (storage layer).

SQLite keeps the locks of a process in memory shared by all of its connections, and
``fork()`` copies that memory. A pool process forked while another thread (the heartbeat,
the events sender, the ETA release, a lease renewal, an embedded beat) held a write
transaction inherits the record of a lock it does not hold, which nothing in it will ever
release: every write it tries waits out the busy timeout and fails with "database is
locked". A task result written there is lost, and a task seems to hang.

Closing a connection counts: the last one to close checkpoints the WAL, under a lock.

So the threads that write hold ``DATABASE_WRITES.writing(alias)`` around each piece of
database work and the close after it, many at once, and the pool forks inside
``DATABASE_WRITES.forking()``, which waits for the writes in progress to end and holds new
ones back until the fork is done: milliseconds. Only SQLite needs it (a PostgreSQL lock
lives in the server), so on another database ``writing`` holds nothing, and a section
that also talks to a broker never delays a fork there. A section must never wait for the
thread that forks (a pool lock, a queue it fills), or the two would wait for each other;
as a last guard the fork goes ahead after ``FORK_WAIT`` seconds, with a warning.

The state is the process's own, as fork() is: one gate, reset in each child.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

logger = logging.getLogger("djtasks.backends.fork_safety")

#: The longest a fork waits for writes in progress: past it something is stuck, not writing.
FORK_WAIT = 10.0


class ForkGate:
    """Writes from many threads at once, or one fork, never both."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._writers = 0
        self._forking = False

    @contextmanager
    def writing(self, alias: str | None) -> Iterator[None]:
        """Hold off forks while this thread writes to database ``alias``, if it is SQLite.

        ``None`` names no database (events to a broker that is not ``django://``): nothing
        is held.
        """
        if alias is None or connections[alias].vendor != "sqlite":
            yield
            return
        with self._cond:
            self._cond.wait_for(lambda: not self._forking)
            self._writers += 1
        try:
            yield
        finally:
            with self._cond:
                self._writers -= 1
                self._cond.notify_all()

    @contextmanager
    def forking(self, timeout: float = FORK_WAIT) -> Iterator[None]:
        """Wait for the writes in progress to end, and hold new ones back, while forking."""
        started = time.monotonic()
        with self._cond:
            self._forking = True  # before waiting: a steady stream of writers cannot starve it
            if not self._cond.wait_for(lambda: self._writers == 0, timeout):
                logger.warning("Forking a pool process while %d thread(s) still write to the "
                               "database after %.0f s; it may find SQLite locked",
                               self._writers, time.monotonic() - started)
        try:
            yield
        finally:
            with self._cond:
                self._forking = False
                self._cond.notify_all()

    @property
    def fork_pending(self) -> bool:
        """Whether a fork waits for (or is under way after) the writes in progress."""
        with self._cond:
            return self._forking

    def reset_in_child(self) -> None:
        # The child starts with the parent's state (forking, and the parent's writers),
        # but none of those threads; its own lock is taken afresh.
        self._cond = threading.Condition()
        self._writers = 0
        self._forking = False


#: The one gate of the process: fork() is process-wide, so is what it must wait for.
DATABASE_WRITES = ForkGate()
os.register_at_fork(after_in_child=DATABASE_WRITES.reset_in_child)
