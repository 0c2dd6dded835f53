"""How an idle django:// consumer waits: LISTEN/NOTIFY on PostgreSQL, backoff elsewhere (storage layer)."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from time import monotonic
from typing import Any

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "djtasks:"
# PostgreSQL truncates identifiers to 63 bytes, and pg_notify() refuses longer names.
MAX_CHANNEL_BYTES = 63
FIRST_POLL = 0.005  # seconds; doubled after each empty poll up to polling_interval


def notify_channel(queue: str) -> str:
    """Return the NOTIFY channel of ``queue``: its name, or a digest of a long name."""
    name = CHANNEL_PREFIX + queue
    if len(name.encode()) <= MAX_CHANNEL_BYTES:
        return name
    return CHANNEL_PREFIX + hashlib.sha1(queue.encode()).hexdigest()  # noqa: S324 - a name, not a secret


class Backoff:
    """Sleep lengths that double after each empty poll, from ``first`` up to ``maximum``."""

    def __init__(self, maximum: float, first: float = FIRST_POLL) -> None:
        self.first = min(first, maximum)
        self.maximum = maximum
        self.current = self.first

    def next(self) -> float:
        """Return the next sleep length and double the one after it."""
        current = self.current
        self.current = min(current * 2, self.maximum)
        return current

    def reset(self) -> None:
        """Start again from ``first``: a message arrived."""
        self.current = self.first


class Listener:
    """A dedicated psycopg connection that LISTENs on the channels of the consumed queues.

    It is never a Django connection: it stays idle in LISTEN for as long as the consumer
    lives, which would pin a pooled Django connection and hide it from the ORM's
    transaction handling. A failure is logged and the caller falls back to polling;
    the next ``listen()`` after ``retry_after`` seconds connects again.
    """

    def __init__(self, params: dict[str, Any], retry_after: float) -> None:
        # Django's cursor factory and adapters context belong to Django's own connections.
        self._params = {
            k: v for k, v in params.items()
            if k not in ("cursor_factory", "context", "prepare_threshold")
        }
        self._retry_after = retry_after
        self._conn: psycopg.Connection | None = None
        self._channels: frozenset[str] = frozenset()
        self._failed_at: float | None = None

    @property
    def ready(self) -> bool:
        """Whether a wait would be woken by NOTIFY (else the caller must poll)."""
        return self._conn is not None

    def listen(self, queues: Iterable[str]) -> bool:
        """LISTEN on the channels of ``queues`` and stop listening on others.

        Return True when the set changed: a message published before the LISTEN took
        effect raised no notification here, so the caller must look again before waiting.
        """
        wanted = frozenset(notify_channel(q) for q in queues)
        if self._conn is not None and wanted == self._channels:
            return False
        if self._failed_at is not None and monotonic() - self._failed_at < self._retry_after:
            return False
        try:
            conn = self._connect()
            for channel in wanted - self._channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            for channel in self._channels - wanted:
                conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error as exc:
            self._fail(exc)
            return False
        self._channels = wanted
        return True

    def wait(self, timeout: float) -> None:
        """Block until a notification arrives or ``timeout`` seconds pass."""
        if self._conn is None:
            return
        try:
            # Every notification already read from the socket is consumed here, so a
            # burst of publishes wakes the consumer once, not once per message.
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error as exc:
            self._fail(exc)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = self._conn, None
        self._channels = frozenset()
        if conn is not None:
            conn.close()

    def _connect(self) -> psycopg.Connection:
        if self._conn is None:
            self._channels = frozenset()
            self._conn = psycopg.connect(**self._params, autocommit=True)
            self._failed_at = None
        return self._conn

    def _fail(self, exc: psycopg.Error) -> None:
        logger.warning("djtasks transport: LISTEN connection failed, polling instead: %s", exc)
        self._failed_at = monotonic()
        try:
            self.close()
        except psycopg.Error:
            self._conn = None


class Waiter:
    """Where a transport's drain_events waits when no channel had a message.

    Waits on NOTIFY when a listener is ready and the channels can take messages;
    otherwise sleeps on an event with backoff. Acks set the event, because a channel
    whose prefetch window is full waits for an ack, and no NOTIFY announces one.
    """

    def __init__(self, polling_interval: float, listener: Listener | None) -> None:
        self.polling_interval = polling_interval
        self.listener = listener
        self.backoff = Backoff(polling_interval)
        self.event = threading.Event()

    def wait(self, remaining: float | None, can_consume: bool) -> None:
        """Wait at most ``remaining`` seconds (None: no limit) for a reason to look again."""
        if can_consume and self.listener is not None and self.listener.ready:
            pause = self.polling_interval
            self.listener.wait(pause if remaining is None else min(pause, remaining))
            return
        pause = self.backoff.next()
        self.event.wait(pause if remaining is None else min(pause, remaining))
        self.event.clear()

    def close(self) -> None:
        """Release the listener's connection."""
        if self.listener is not None:
            self.listener.close()
