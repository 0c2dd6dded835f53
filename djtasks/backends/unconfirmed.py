"""UnconfirmedWrites: a result upsert sent without waiting for its commit (storage layer).

A worker that runs its tasks in its own thread (the solo pool, and each child of a prefork
worker whose children consume) used to wait after every task for PostgreSQL to commit its
result and flush the WAL, and did nothing else meanwhile. With results on, that wait was
most of a noop task's time: on this 2-core VM a drain with durable commits ran at a third
of one with ``synchronous_commit=off``. Here the statement is sent on a connection of its
own, and its reply is read later: before the next write, when the worker is idle, or when
a caller needs the result committed (a chord's join reads it; an ``acks_late`` message is
acknowledged only after it).

Nothing is lost by not waiting. The statement has reached the server before ``send()``
returns, and PostgreSQL executes and commits an autocommit statement it received even if
the sender is killed a moment later. The NOTIFY that wakes ``AsyncResult.get()`` goes out
at that commit, as before. A reply that is an error, or a connection that broke before
the reply came, is not dropped: the write is made again through Django's connection, with
the retries every result write has. If that fails too, the task's FAILURE is stored in
its place (as when the process that ran it could not record it), and logged.
"""

from __future__ import annotations

import logging
import os
import select
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from django.db import connections
from psycopg import ClientCursor, pq

from djtasks.backends.listener import connection_params
from djtasks.backends.outages import describe

logger = logging.getLogger("djtasks.results")

#: The longest wait for the bytes of one statement to leave, or for its reply to come,
#: before the connection counts as broken (the write is then made again through Django).
SOCKET_WAIT = 30.0


@dataclass(frozen=True)
class _Sent:
    label: str  # the task id, for the log
    again: Callable[[], None]  # the same write, made through Django's connection
    unrecorded: Callable[[Exception], None]  # what is stored instead if that fails too


class UnconfirmedWrites:
    """At most one statement in flight on a connection of its own, in one thread."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._conn: psycopg.Connection | None = None
        self._pid = os.getpid()
        self._sent: _Sent | None = None

    @property
    def pending(self) -> bool:
        return self._sent is not None and self._pid == os.getpid()

    def send(self, sql: str, params: list, *, label: str, again: Callable[[], None],
             unrecorded: Callable[[Exception], None]) -> None:
        """Send ``sql`` with ``params`` and return before its reply.

        ``again`` is the fallback, called when the reply is an error; ``unrecorded(error)``
        when that fails as well (a value the server refuses, such as a NUL in JSON), so
        that the task's caller learns of it instead of waiting for ever.
        """
        self.confirm()
        try:
            conn = self._connection()
            query = ClientCursor(conn).mogrify(sql, params).encode()
            conn.pgconn.send_query(query)
            self._flush(conn.pgconn)
        except (psycopg.Error, OSError) as exc:
            logger.info("Result of %s: sending it alone failed (%s); writing it the usual way",
                        label, describe(exc))
            self._drop()
            again()
            return
        self._sent = _Sent(label, again, unrecorded)

    def confirm(self, wait: bool = True) -> None:
        """Read the reply of the statement in flight; ``wait=False``: only if it has come."""
        sent = self._sent
        if sent is None:
            return
        if self._pid != os.getpid():  # inherited over fork: the parent reads its own
            self._sent, self._conn = None, None
            return
        assert self._conn is not None, "a statement in flight has its connection"
        pgconn = self._conn.pgconn
        try:
            if not wait:
                pgconn.consume_input()
                if pgconn.is_busy():
                    return
            error = _reply_error(pgconn)
        except (psycopg.Error, OSError) as exc:
            error = describe(exc)
            self._drop()
        self._sent = None
        if error is None:
            return
        logger.warning("Result of %s: %s; writing it again", sent.label, error)
        try:
            sent.again()
        except Exception as exc:
            logger.error("The result of task %s could not be stored: %s", sent.label, describe(exc))
            try:
                sent.unrecorded(exc)
            except Exception:
                logger.exception("Nor could its failure be stored: task %s has no result", sent.label)

    def close(self) -> None:
        self.confirm()
        self._drop()

    def _connection(self) -> psycopg.Connection:
        if self._conn is not None and (self._pid != os.getpid() or self._conn.closed):
            self._conn = None  # after fork the parent's socket is not ours
        if self._conn is None:
            conn = psycopg.connect(**connection_params(self.alias), autocommit=True)
            # Django's session time zone, which a naive datetime (USE_TZ = False) is read in.
            conn.execute("SELECT set_config('TimeZone', %s, false)", [connections[self.alias].timezone_name])
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _flush(self, pgconn: pq.abc.PGconn) -> None:
        while pgconn.flush():  # 1: more to send once the socket is writable
            if not select.select([], [pgconn.socket], [], SOCKET_WAIT)[1]:
                raise OSError(f"the statement could not be sent in {SOCKET_WAIT:.0f} s")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            try:
                conn.close()
            except psycopg.Error:
                pass


def _reply_error(pgconn: pq.abc.PGconn) -> str | None:
    """Wait for the whole reply; return its error message, None if the statement succeeded."""
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        if not select.select([pgconn.socket], [], [], SOCKET_WAIT)[0]:
            raise OSError(f"no reply in {SOCKET_WAIT:.0f} s")
    error = None
    while (result := pgconn.get_result()) is not None:
        if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            error = (result.error_message or b"").decode(errors="replace").strip() or str(result.status)
    return error
