"""NotificationListener: wait on a PostgreSQL LISTEN channel instead of polling (storage layer).

A listener holds its own psycopg connection, outside Django's, because a LISTEN must stay
open between the caller's queries and must never be inside the caller's transaction.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from django.db import connections

from djtasks.exceptions import TimeoutError as WaitTimeoutError

T = TypeVar("T")
_DJANGO_ONLY_PARAMS = ("context", "cursor_factory", "server_side_binding", "pool")


def connection_params(alias: str) -> dict:
    """Return psycopg connect() arguments for a Django PostgreSQL alias."""
    params = dict(connections[alias].get_connection_params())
    for key in _DJANGO_ONLY_PARAMS:
        params.pop(key, None)
    return params


class NotificationListener:
    """One LISTEN connection; ``wait_until`` re-checks a condition each time it is woken."""

    def __init__(self, alias: str, channel: str) -> None:
        self.alias = alias
        self.channel = channel
        self._pid = os.getpid()
        self._conn: psycopg.Connection | None = None

    def connection(self) -> psycopg.Connection:
        # After fork, the parent's socket is not ours to use or to close.
        if self._conn is not None and (self._pid != os.getpid() or self._conn.closed):
            self._conn = None
        if self._conn is None:
            self._conn = psycopg.connect(**connection_params(self.alias), autocommit=True)
            self._conn.execute(f'LISTEN "{self.channel}"')
            self._pid = os.getpid()
        return self._conn

    def wait(self, timeout: float, wakes: Callable[[str], bool] | None = None) -> str | bool:
        """Sleep until a notification arrives on the channel or ``timeout`` s pass.

        Return the payload of the notification that woke it, True if the connection failed,
        False after ``timeout``. ``wakes``: only a payload it accepts wakes the caller (the
        others, each about a different task, are read and passed over).
        """
        try:
            for notify in self.connection().notifies(timeout=timeout):
                if wakes is None or wakes(notify.payload):
                    return notify.payload
        except psycopg.OperationalError:
            # The server closed the connection (restart, pg_terminate_backend): listen anew
            # next time; the caller checks again, so no notification is missed for good.
            self._drop()
            return True
        return False

    def poll(self) -> bool:
        """Return whether anything happened on the channel since the last poll, at once.

        True also for a connection just made (what came before it is unknown) and for
        one that failed (it is made anew at the next poll).
        """
        fresh = self._conn is None or self._conn.closed or self._pid != os.getpid()
        try:
            arrived = any(True for _ in self.connection().notifies(timeout=0))
        except psycopg.OperationalError:
            self._drop()
            return True
        return fresh or arrived

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def wait_until(self, check: Callable[[], T | None], *, timeout: float | None,
                   interval: float = 1.0, timeout_message: str = "",
                   wakes: Callable[[str], bool] | None = None,
                   answer: Callable[[str], T | None] | None = None) -> T:
        """Return ``check()``'s first truthy answer; check again whenever notified.

        ``interval`` bounds each sleep, so a lost notification costs at most that long.
        ``wakes``: only the notifications it accepts count (wait's argument). ``answer``:
        the answer a payload carries itself, if it does; then nothing is checked again.
        """
        self.connection()  # LISTEN before the first check, so no notification slips by
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            pause = interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeoutError(timeout_message or f"not ready after {timeout} s")
                pause = min(pause, left)
            woke = self.wait(pause, wakes)
            if isinstance(woke, str) and answer is not None:
                told = answer(woke)
                if told:
                    return told

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
