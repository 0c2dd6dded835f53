"""Revocations: the revoked task ids a worker knows, read from the result store (processes layer).

Revoked ids live in the result database, so a worker started after the revoke knows it
too. Before the consumer starts a task it asks here; the answer comes from memory, which
is brought up to date (reading only what was revoked since the last look) when a message
has arrived since that look, at most once per MIN_LOOK_INTERVAL. So a revoke committed
that long before a message is received is always honoured, and a busy worker makes at
most 20 look-ups a second however fast its messages come (profiling a 5,000-task chord
showed a look per message taking a third of the main thread).

A store that signals new revocations (PostgreSQL: a NOTIFY at the revoke's commit, polled
without waiting) spares even those: the worker looks only after a signal, and once per
SAFETY_LOOK_INTERVAL in case one went astray. Twenty looks a second were still a sixth of
the main thread of a threads-pool worker, and a tenth of a child's time with Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from djtasks.backends.base import ResultBackend
from djtasks.backends.outages import describe

logger = logging.getLogger("djtasks.worker")

#: Each look re-reads this far back: a revoke whose transaction committed after a later
#: one (so with an earlier date_revoked) is still seen.
OVERLAP = timedelta(seconds=5)

#: The shortest time between two looks at the store.
MIN_LOOK_INTERVAL = 0.05
#: With a store that signals revocations, the longest time between two looks while
#: messages arrive, signal or not.
SAFETY_LOOK_INTERVAL = 5.0


class Revocations:
    """Answer "is this task id revoked?" for one worker."""

    def __init__(self, backend: ResultBackend, keep_for: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.keep_for = keep_for
        self.clock = clock
        self._seen: dict[str, float] = {}  # task id -> when this worker learnt of it
        self._cursor: datetime | None = None
        self._outdated = True
        self._next_look = 0.0
        self._next_safety_look = 0.0
        self._unread_signal = False
        self.enabled = True
        self._terminated: dict[str, int] = {}  # task id -> the signal that stopped it

    def message_received(self) -> None:
        """Note that a message arrived: the next question must look at the store first."""
        self._outdated = True

    def add(self, task_ids: list[str]) -> None:
        """Know ``task_ids`` revoked at once (a revoke command said so; the store has them)."""
        now = self.clock()
        for task_id in task_ids:
            self._seen.setdefault(task_id, now)

    def known(self) -> list[str]:
        """Return the ids this worker knows revoked (inspect ``revoked``), sorted."""
        return sorted(self._seen)

    def mark_terminated(self, task_id: str, signum: int) -> None:
        """Note that a revoke stopped ``task_id``'s running execution with ``signum``."""
        self._terminated[task_id] = signum

    def terminated_by(self, task_id: str) -> int | None:
        """Return (once) the signal a revoke stopped ``task_id`` with; None if it did not."""
        return self._terminated.pop(task_id, None)

    def __contains__(self, task_id: str) -> bool:
        if self._outdated and self.clock() >= self._next_look and self._may_have_changed():
            self.refresh()
        return task_id in self._seen

    def _may_have_changed(self) -> bool:
        # Polled before every look, the first one included: the signal must be listening
        # before a look, or a revoke committed between the two would wait for the safety look.
        try:
            signalled = self.backend.revocations_changed()
        except Exception as exc:  # the signal is an optimisation: without it, look
            logger.debug("The revocation signal failed (%s); looking at the store", describe(exc))
            signalled = True
        if signalled is None:
            return True  # a store that cannot tell: look by time
        # A poll consumes the signal: it is kept until a look has succeeded.
        self._unread_signal = self._unread_signal or signalled
        if self._unread_signal or self.clock() >= self._next_safety_look:
            return True
        # Nothing new. The next message asks the signal again, but not within
        # MIN_LOOK_INTERVAL: each poll is a system call, and in a threads pool each
        # system call of the main thread waits for the GIL on its way back.
        self._outdated = False
        self._next_look = self.clock() + MIN_LOOK_INTERVAL
        return False

    def refresh(self) -> None:
        """Read the ids revoked since the last look."""
        if not self.enabled:
            return
        self._outdated = False
        self._next_look = self.clock() + MIN_LOOK_INTERVAL
        self._next_safety_look = self.clock() + SAFETY_LOOK_INTERVAL
        since = self._cursor - OVERLAP if self._cursor is not None else None
        try:
            ids, self._cursor = self.backend.revoked_since(since)
            self._unread_signal = False
        except NotImplementedError:
            logger.warning("The result backend %s keeps no revoked ids: revoke() has no effect "
                           "on this worker", type(self.backend).__name__)
            self.enabled = False
            return
        except Exception as exc:  # the database may be away for a moment: look again next time
            self._outdated = True
            logger.warning("Could not read the revoked task ids (%s); the task runs", describe(exc))
            return
        now = self.clock()
        for task_id in ids:
            self._seen.setdefault(task_id, now)
        self._forget_older_than(now - self.keep_for)

    def _forget_older_than(self, moment: float) -> None:
        # Revokes expire in the store after revoke_expires; memory follows the same rule.
        for task_id in [task_id for task_id, seen in self._seen.items() if seen < moment]:
            del self._seen[task_id]
