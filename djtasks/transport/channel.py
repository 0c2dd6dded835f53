"""The django:// channel: publish, lease and ack QueueMessage rows (storage layer)."""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import timedelta
from queue import Empty
from time import monotonic
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections, transaction
from django.utils import timezone
from kombu.transport import virtual
from kombu.utils.json import dumps, loads

from djtasks import protocol
from djtasks.models.execution import DeadLetter
from djtasks.transport.acks import MAX_PENDING_ACKS, PendingAcks
from djtasks.transport.bindings import DurableBindings
from djtasks.transport.lease import LeaseQoS, Renewer
from djtasks.transport.statements import (
    DELIVERY_COUNT,
    ID,
    PAYLOAD,
    PRIORITY,
    Delivery,
    build,
    fetch_delete_params,
    fetch_params,
)
from djtasks.transport.wakeup import notify_channel
from djtasks.utils.log import loggable

if TYPE_CHECKING:
    from djtasks.transport.django import Transport

Row = tuple[int, str, int, int]
logger = logging.getLogger("djtasks.transport")

#: Seconds a queue found empty is not asked again while another queue is delivering.
#: kombu's fair cycle asks every consumed queue in turn, so a busy worker's quiet queues
#: (its remote-control mailbox above all) cost a query per message without this. Once no
#: queue delivers, the transport forgets these marks before it waits: an idle consumer
#: still sees every queue at once.
QUIET_RECHECK = 0.05


class Channel(DurableBindings, virtual.Channel):
    """A kombu virtual channel over ``QueueMessage`` rows.

    Rows are leased in batches into a per-queue buffer and handed out one per
    ``_get``; every leased row (buffered or delivered) is renewed until it is acked,
    rejected or given back. An ack deletes its row later, with others (see
    ``transport.acks``); a reject or requeue runs at once. Database work goes through
    ``connections[alias]`` of the calling thread, so a reject from another thread uses
    that thread's connection.
    """

    QoS = LeaseQoS

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.alias = connection.alias
        self.visibility_timeout = connection.visibility_timeout
        self.fetch_limit = connection.fetch_limit
        self.ack_flush_delay = connection.ack_flush_delay
        self._lease = timedelta(seconds=self.visibility_timeout)
        self._notify = connection.notify
        self._sql = build(connections[self.alias])
        self._buffer: dict[str, deque[Row]] = {}
        # row id -> the delivery_count of this channel's delivery of it (statements.Delivery).
        self._leased: dict[int, int] = {}
        self._acks = PendingAcks()
        # Held across a renewal, so a requeue cannot be overwritten by a renewal that
        # read the row id before the requeue removed it.
        self._lease_lock = threading.Lock()
        self._no_ack_queues: set[str] = set()
        self._renewer: Renewer | None = None
        self._found_empty: dict[str, float] = {}  # queue -> when a fetch last found nothing

    # -- publish ---------------------------------------------------------------------

    def _put(self, queue: str, message: dict, **kwargs: Any) -> None:
        connection = connections[self.alias]
        # A task message due later (its eta, or an expiry before it) is stored invisible
        # until then: the row's visibility keeps it from every consumer without one of them
        # holding it for the wait, so the channel asks the protocol module when it is due.
        # created_at moves with it, so a requeue puts it back to that time and no earlier.
        now = timezone.now()
        due = protocol.due_time(message.get("headers"))
        shown = connection.ops.adapt_datetimefield_value(now if due is None else max(now, due))
        params = [queue, dumps(message), self._get_message_priority(message), shown, shown]
        statement = self._sql.insert
        if self._notify:
            statement = self._sql.insert_notify
            params.append(notify_channel(queue))
        with connection.cursor() as cursor:
            cursor.execute(statement, params)

    # -- consume ---------------------------------------------------------------------

    def _get(self, queue: str, timeout: float | None = None) -> dict:
        buffered = self._buffer.get(queue)
        if not buffered:
            found_empty = self._found_empty.get(queue)
            if found_empty is not None and monotonic() - found_empty < QUIET_RECHECK:
                raise Empty()
            no_ack = queue in self._no_ack_queues
            try:
                buffered = self._fetch(queue, 1 if no_ack else self._fetch_size(), no_ack)
            except Empty:
                self._found_empty[queue] = monotonic()
                raise
            self._found_empty.pop(queue, None)
        message = self._first_readable(queue, buffered)
        if message is None:
            raise Empty()
        return message

    def forget_empty_queues(self) -> None:
        """Ask every queue again at the next ``_get`` (see QUIET_RECHECK)."""
        self._found_empty.clear()

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        """Take one message now, or return None; leases one row, not a batch."""
        buffered = self._buffer.get(queue)
        from_buffer = bool(buffered)
        try:
            rows = buffered if buffered else self._fetch(queue, 1, no_ack)
        except Empty:
            return None
        payload = self._first_readable(queue, rows)
        if payload is None:
            return None
        message = self.Message(payload, channel=self)
        if no_ack and from_buffer:
            self._finish(message.delivery_tag, requeue=False)
        elif not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        # Nobody acks a no-ack delivery, so such a queue's rows are deleted as taken.
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> None:
        queue = self._tag_to_queue.get(consumer_tag)
        super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._no_ack_queues.discard(queue)
            self._release_buffered([queue])

    def _fetch_size(self) -> int:
        estimate = self.qos.can_consume_max_estimate()  # None: no prefetch limit
        size = self.fetch_limit if estimate is None else min(estimate, self.fetch_limit)
        return max(size - sum(len(rows) for rows in self._buffer.values()), 1)

    def _fetch(self, queue: str, limit: int, no_ack: bool) -> deque[Row]:
        """Lease (or, for no-ack, delete) up to ``limit`` ready rows in one statement."""
        connection = connections[self.alias]
        adapt = connection.ops.adapt_datetimefield_value
        now = timezone.now()
        acked: list[Delivery] = []
        if no_ack:
            # A no-ack queue (remote control's mailbox) is asked often: its fetch leaves
            # the acks to the next lease or wait, so that they gather.
            statement = self._sql.fetch_delete
            params = fetch_delete_params(queue, adapt(now), limit)
        else:
            statement = self._sql.fetch
            params = fetch_params(self._sql, queue, adapt(now), adapt(now + self._lease), limit)
            if self._sql.fetch_acking is not None:
                acked = self._acks.take()
                if acked:
                    statement = self._sql.fetch_acking
                    params = [[pk for pk, _ in acked], [count for _, count in acked], *params]
            else:
                self.flush_acks()
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                rows = cursor.fetchall()
        except BaseException:
            self._acks.put_back(acked)
            raise
        if not rows:
            raise Empty()
        # RETURNING has no order; within a batch deliver by priority, then publish order.
        rows.sort(key=_delivery_order)
        if not no_ack:
            with self._lease_lock:
                self._leased.update((row[ID], row[DELIVERY_COUNT]) for row in rows)
            if self._renewer is None:
                self._renewer = Renewer(self.alias, self._renew, self.visibility_timeout / 3,
                                        flush=self.flush_acks, flush_delay=self.ack_flush_delay)
        buffered = self._buffer[queue] = deque(rows)
        return buffered

    def _first_readable(self, queue: str, rows: deque[Row]) -> dict | None:
        """Take rows off ``rows`` until one reads as a message; dead-letter those that do not.

        A row that is not a kombu message (not JSON, say: written by hand or by another
        program) cannot be given back, since every consumer would fail on it again: it
        is deleted from the queue and kept as a DeadLetter, with the reason.
        """
        while rows:
            row = rows.popleft()
            try:
                return self._to_message(row)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                self._dead_letter(queue, row, exc)
        return None

    def _dead_letter(self, queue: str, row: Row, exc: Exception) -> None:
        reason = f"queue row {row[ID]} is not a message: {type(exc).__name__}: {exc}"
        logger.error("django:// queue %s: %s; dead-lettered", loggable(queue), loggable(reason, 1000))
        with transaction.atomic(using=self.alias):
            # The transport knows no app, so no dead_letter_max_count: the next worker's
            # dead letter trims the table, and backend_cleanup deletes the old ones.
            DeadLetter.objects.using(self.alias).keep_unreadable(
                row[PAYLOAD], reason, reason_code="decode_error", queue=queue)
            self._finish(row[ID], requeue=False)

    def _to_message(self, row: Row) -> dict:
        message = loads(row[PAYLOAD])
        properties = message["properties"]
        # The row id is the delivery tag: an ack names the row to delete.
        properties["delivery_tag"] = row[ID]
        if row[DELIVERY_COUNT] > 1:
            properties["delivery_info"]["redelivered"] = True
        return message

    # -- acknowledge, requeue, give back ---------------------------------------------

    def _ack(self, row_id: int) -> None:
        """Stop renewing an acked row and delete it with the next flush (see flush_acks)."""
        with self._lease_lock:
            count = self._leased.pop(row_id, None)
        if count is None:  # not taken by this channel: a dead child's, which its parent settles
            self._execute_with_ids(self._sql.ack_any, [row_id])
            self._wake_consumer()
            return
        pending = self._acks.add((row_id, count))
        renewer = self._renewer  # a close from another thread may drop it meanwhile
        if pending >= MAX_PENDING_ACKS or renewer is None:
            self.flush_acks()
        else:
            # The renewer deletes what no fetch or wait of the consumer took meanwhile.
            renewer.flush_soon()
        self._wake_consumer()

    def flush_acks(self) -> bool:
        """Delete every acked row in one statement; return whether there were any.

        A failed delete keeps the ids for the next flush. Acked rows not yet deleted when
        the process dies are delivered again after the visibility timeout: at least once.
        """
        acked = self._acks.take()
        if not acked:
            return False
        try:
            self._execute_with_deliveries(self._sql.ack, acked)
        except BaseException:
            self._acks.put_back(acked)
            raise
        return True

    def _finish(self, row_id: int, requeue: bool) -> None:
        """Delete a rejected row now, or make a requeued one visible again at its old place."""
        with self._lease_lock:
            count = self._leased.pop(row_id, None)
        if count is None:  # not taken by this channel: a dead child's, which its parent settles
            self._execute_with_ids(self._sql.requeue_any if requeue else self._sql.ack_any, [row_id])
        else:
            statement = self._sql.requeue if requeue else self._sql.ack
            self._execute_with_deliveries(statement, [(row_id, count)])
        self._wake_consumer()

    def _wake_consumer(self) -> None:
        if self.connection is not None:
            # A consumer whose prefetch window was full may be waiting for this.
            self.connection.waiter.event.set()

    def _restore_delivered(self, row_ids: list[int]) -> None:
        self.flush_acks()
        with self._lease_lock:
            deliveries = [(pk, self._leased.pop(pk)) for pk in row_ids if pk in self._leased]
        self._execute_with_deliveries(self._sql.requeue, deliveries)

    def _release_buffered(self, queues: list[str]) -> None:
        deliveries = [(row[ID], row[DELIVERY_COUNT]) for q in queues for row in self._buffer.pop(q, ())]
        with self._lease_lock:
            for pk, _ in deliveries:
                self._leased.pop(pk, None)
        self._execute_with_deliveries(self._sql.release, deliveries)

    def _release_leases(self, restore_delivered: bool) -> None:
        """Stop renewing; give back buffered rows, and delivered ones if asked to."""
        if self._renewer is not None:
            self._renewer.stop()
            self._renewer = None
        self.flush_acks()
        self._release_buffered(list(self._buffer))
        with self._lease_lock:
            delivered, self._leased = list(self._leased.items()), {}
        if restore_delivered:
            self._execute_with_deliveries(self._sql.requeue, delivered)

    def _renew(self) -> None:
        """Push the lease of every row this channel holds to now + visibility_timeout."""
        # Acked rows are no longer renewed: delete them before their leases run out. A
        # failure must not cost the renewal, which would let the other leases lapse.
        try:
            self.flush_acks()
        except DatabaseError:
            logger.warning("django://: could not delete acked messages; will try again",
                           exc_info=True)
        with self._lease_lock:
            if not self._leased:
                return
            connection = connections[self.alias]
            until = connection.ops.adapt_datetimefield_value(timezone.now() + self._lease)
            statement, params = self._sql.with_ids(self._sql.renew, self._leased)
            with connection.cursor() as cursor:
                cursor.execute(statement, [until, *params])

    def _execute_with_ids(self, statement: str, row_ids: list[int]) -> None:
        if row_ids:
            statement, params = self._sql.with_ids(statement, row_ids)
            with connections[self.alias].cursor() as cursor:
                cursor.execute(statement, params)

    def _execute_with_deliveries(self, statement: str, deliveries: list[Delivery]) -> None:
        if deliveries:
            statement, params = self._sql.with_deliveries(statement, deliveries)
            with connections[self.alias].cursor() as cursor:
                cursor.execute(statement, params)

    # -- queues ----------------------------------------------------------------------

    def _size(self, queue: str) -> int:
        connection = connections[self.alias]
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(self._sql.size, [queue, now])
            (count,) = cursor.fetchone()
        return count + len(self._buffer.get(queue, ()))

    def _purge(self, queue: str) -> int:
        connection = connections[self.alias]
        params: list[Any] = [queue, connection.ops.adapt_datetimefield_value(timezone.now())]
        statement = self._sql.purge
        # Rows this channel leased but has not delivered are still in the queue.
        row_ids = [row[ID] for row in self._buffer.pop(queue, ())]
        if row_ids:
            with self._lease_lock:
                for pk in row_ids:
                    self._leased.pop(pk, None)
            statement, id_params = self._sql.with_ids(self._sql.purge_with_ids, row_ids)
            params.extend(id_params)
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.rowcount

    def close(self) -> None:
        if not self.closed:
            # Before kombu's close, which cannot know that buffered rows are leased.
            for consumer_tag in list(self._consumers):
                self.basic_cancel(consumer_tag)
            self.qos.restore_unacked_once()
            try:
                self.flush_acks()  # restore_unacked_once flushed, unless it ran before
            except DatabaseError:
                logger.exception("django://: could not delete acked messages at close; "
                                 "they are delivered again after the visibility timeout")
        super().close()


def _delivery_order(row: Row) -> tuple[int, int]:
    return (-row[PRIORITY], row[ID])
