"""Database outages: which errors pass, and how a loop or a write waits one out (storage layer).

Every process loop of djtasks (the consumer, beat, the ETA release, lease renewal) and every
result write meets the database, and the database fails now and then: SQLite says "database
is locked", PostgreSQL restarts or drops a connection. None of that may stop a process. An
``Outage`` is one loop's view of such an incident: it logs one line when the incident starts
and one when it ends (never a traceback per retry), drops the broken connection, hands back
a growing, jittered delay, and gives up, raising ``DatabaseUnavailable``, only once the
database has failed for longer than ``database_retry_timeout``: a missing table or wrong
credentials do not heal, and a process that waits for them for ever hides the problem.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from djtasks.exceptions import DatabaseUnavailable
from djtasks.utils.retries import Backoff

#: Errors that a retry may cure: the server went away, a lock, a serialization failure.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
#: How long a single write (a result, say) keeps trying before its caller hears of the
#: failure: long enough for a PostgreSQL restart, short enough not to stall a loop.
WRITE_RETRY_SECONDS = 10.0

T = TypeVar("T")
logger = logging.getLogger("djtasks.database")


def describe(exc: BaseException) -> str:
    """Return ``Type: first line of the message`` (drivers append multi-line details)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Outage:
    """One loop's current database incident, if any. Not thread-safe: one per loop."""

    def __init__(self, name: str, give_up_after: float | None, *,
                 log: logging.Logger = logger, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.give_up_after = give_up_after
        self.log = log
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.started: float | None = None

    @property
    def ongoing(self) -> bool:
        return self.started is not None

    def failed(self, exc: BaseException) -> float:
        """Record that ``exc`` interrupted the loop; return the seconds to wait.

        Raises DatabaseUnavailable once the incident is older than ``give_up_after``.
        """
        now = self.clock()
        if self.started is None:
            self.started = now
            self.log.warning("%s: database error (%s); retrying with backoff", self.name,
                             describe(exc))
        close_broken_connections()
        elapsed = now - self.started
        if self.give_up_after is not None and elapsed >= self.give_up_after:
            raise DatabaseUnavailable(
                f"{self.name}: the database kept failing for {elapsed:.0f} s, longer than "
                f"database_retry_timeout ({self.give_up_after:g} s); last error: {describe(exc)}"
            ) from exc
        return self.backoff.next_delay()

    def succeeded(self) -> None:
        """Record that the loop did its work; close the incident, if one was open."""
        if self.started is not None:
            self.log.warning("%s: database reachable again after %.1f s (%d retries)", self.name,
                             self.clock() - self.started, self.backoff.failures)
            self.started = None
            self.backoff.reset()


def close_broken_connections() -> None:
    """Close this thread's connections that an error broke; Django opens new ones on use.

    A healthy one (after SQLite's "locked", say) is kept, and so is one inside a
    transaction: that belongs to its caller, who is about to hear of the error.
    """
    for connection in connections.all(initialized_only=True):
        if (connection.connection is not None and connection.errors_occurred
                and not connection.in_atomic_block):
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                close_quietly(connection.alias)


def close_quietly(alias: str) -> None:
    """Close this thread's connection to ``alias``; one the server already dropped may fail."""
    try:
        connections[alias].close()
    except DatabaseError:
        logger.debug("closing the connection to %r failed; it was broken", alias, exc_info=True)


def retried_write(method: Callable[..., T]) -> Callable[..., T]:
    """Decorate a write method of a storage object with an ``alias``: retry transient errors."""
    @functools.wraps(method)
    def write(self: Any, *args: Any, **kwargs: Any) -> T:
        return retry_transient(lambda: method(self, *args, **kwargs), self.alias,
                               f"{type(self).__name__}.{method.__name__}")
    return write


def retry_transient(operation: Callable[[], T], alias: str, what: str,
                    give_up_after: float = WRITE_RETRY_SECONDS,
                    sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``operation``; while it fails with a transient database error, retry it.

    Inside a transaction there is nothing to retry (PostgreSQL has aborted it, and the
    caller's earlier statements are gone with it): the error goes to the caller at once.
    After ``give_up_after`` seconds the last error is raised.
    """
    outage: Outage | None = None  # made on the first failure: the usual write has none
    while True:
        try:
            result = operation()
        except TRANSIENT_ERRORS as exc:
            if connections[alias].in_atomic_block:
                raise
            outage = outage or Outage(what, give_up_after)
            try:
                delay = outage.failed(exc)
            except DatabaseUnavailable:
                raise exc from None
            sleep(delay)
        else:
            if outage is not None:
                outage.succeeded()
            return result
