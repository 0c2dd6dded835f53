"""Publisher: a TaskMessage onto the broker through a pooled producer (client layer).

One ``delay()`` borrows a producer from the pool and gives it back; connections are made once
and kept. When the broker cannot be reached, kombu retries by the retry policy and the last
error is translated into ``djtasks.exceptions.OperationalError`` naming the (censored) URL.

On RabbitMQ the task connections use publisher confirms unless ``broker_transport_options``
says ``confirm_publish: False``: ``basic.publish`` alone returns before the broker took the
message, and one it refuses (a full queue, a message over its size limit) is gone without
an error. With confirms, ``delay()`` returns once the broker has it, and raises if refused.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import kombu
from amqp.exceptions import MessageNacked
from django.db import transaction
from kombu.pools import ProducerPool
from kombu.serialization import dumps as encode_body

from djtasks import protocol, signals
from djtasks.backends import outbox
from djtasks.conf import Settings, censor_url
from djtasks.exceptions import ImproperlyConfigured, MessageTooLarge, OperationalError
from djtasks.routing import Route
from djtasks.utils import events

logger = logging.getLogger("djtasks.publish")

#: Seconds after which an outbox row still there is sent by a worker: its own process had
#: that long to send it after the commit.
RELAY_AFTER = 5.0

RETRY_POLICY_KEYS = frozenset({"max_retries", "interval_start", "interval_step", "interval_max"})


@dataclass(frozen=True)
class Outgoing:
    """One task message encoded for the wire, and where it goes.

    ``Publisher.send`` publishes it; the outbox keeps it in a row until it is sent, and
    makes it again from the row (then without ``wire_body`` and ``sent_event``, which
    only the process that prepared it has).
    """

    task: str
    task_id: str
    body: bytes | str  # str from kombu's text serializers, in content_encoding
    content_type: str
    content_encoding: str
    headers: Mapping[str, Any]
    properties: Mapping[str, Any]  # priority, correlation_id, reply_to, ...
    exchange: str
    routing_key: str
    queue: kombu.Queue  # declared before the publish, as for a direct one
    wire_body: Any = None  # [args, kwargs, embed], for after_task_publish
    sent_event: Mapping[str, Any] | None = None  # task-sent's fields, with task_send_sent_event


class Publisher:
    """Publish task messages for one app configuration."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker_url = settings.broker_url
        self._connection = self.new_connection(confirmed=True)
        self._connections = self._connection.Pool(limit=settings.broker_pool_limit)
        self._pool = ProducerPool(self._connections, limit=settings.broker_pool_limit)
        # task_send_sent_event: the producer's Lamport clock and its hostname.
        self._clock = events.LamportClock()
        self._hostname = f"gen{os.getpid()}@{socket.gethostname()}"

    def new_connection(self, confirmed: bool = False) -> kombu.Connection:
        """Return a new, not yet connected, broker connection of this configuration.

        ``confirmed``: the connection publishes tasks, so on RabbitMQ its publishes wait for
        the broker's confirm unless the transport options turn that off. Other connections
        (a worker's consumer, its events and replies) publish what may be lost without harm.
        """
        options = self.settings.broker_transport_options
        connection = kombu.Connection(self.broker_url,
                                      connect_timeout=self.settings.broker_connection_timeout,
                                      transport_options=options)
        if confirmed and "confirm_publish" not in options and speaks_amqp(connection):
            connection.transport_options = {**options, "confirm_publish": True}
        return connection

    def publish(self, message: protocol.TaskMessage, route: Route, *, serializer: str | None = None,
                retry: bool | None = None, retry_policy: Mapping[str, Any] | None = None) -> None:
        """Send ``message`` along ``route``; raise OperationalError if the broker stays away."""
        self.send(self.prepare(message, route, serializer=serializer, retry_policy=retry_policy),
                  retry=retry, retry_policy=retry_policy)

    def prepare(self, message: protocol.TaskMessage, route: Route, *, serializer: str | None = None,
                retry_policy: Mapping[str, Any] | None = None) -> Outgoing:
        """Encode ``message`` for ``route``: what ``send`` publishes, or the outbox keeps.

        ``before_task_publish`` is sent here, with the body still to encode, so that a
        handler may change it; MessageTooLarge when the encoded body is over the limit.
        """
        wire = protocol.to_wire(message)
        priority = message.priority if message.priority is not None else route.priority
        exchange = wire_exchange(route)
        properties = {**wire.properties, "priority": priority}
        signals.before_task_publish.send_robust(
            sender=message.task, body=wire.body, exchange=exchange, routing_key=route.routing_key,
            headers=wire.headers, properties=properties, declare=[route.queue],
            retry_policy=self.retry_policy(retry_policy))
        # Encoded here, once (kombu sends a body with a content type as it is), to refuse
        # what a worker would refuse before it is sent.
        content_type, content_encoding, body = encode_body(
            wire.body, serializer=serializer or self.settings.task_serializer)
        try:
            protocol.check_size(body, self.settings.task_max_message_size)
        except MessageTooLarge as exc:
            raise MessageTooLarge(f"{message.task}[{message.id}] is not sent: {exc}") from None
        sent_event = (sent_event_fields(message, route, exchange)
                      if self.settings.task_send_sent_event else None)
        return Outgoing(task=message.task, task_id=message.id, body=body, content_type=content_type,
                        content_encoding=content_encoding, headers=wire.headers,
                        properties=properties, exchange=exchange, routing_key=route.routing_key,
                        queue=route.queue, wire_body=wire.body, sent_event=sent_event)

    def send(self, outgoing: Outgoing, *, retry: bool | None = None,
             retry_policy: Mapping[str, Any] | None = None) -> None:
        """Publish what ``prepare`` made; raise OperationalError if the broker stays away."""
        policy = self.retry_policy(retry_policy)
        if retry is None:
            retry = self.settings.task_publish_retry
        label = f"{outgoing.task}[{outgoing.task_id}]"
        try:
            with self._pool.acquire(block=True) as producer:
                producer.publish(
                    outgoing.body,
                    exchange=outgoing.exchange,
                    routing_key=outgoing.routing_key,
                    content_type=outgoing.content_type,
                    content_encoding=outgoing.content_encoding,
                    headers=outgoing.headers,
                    declare=[outgoing.queue],
                    retry=retry,
                    retry_policy=policy,
                    delivery_mode=2,
                    **outgoing.properties,
                )
                if outgoing.sent_event is not None:
                    self.send_sent_event(producer, outgoing.task_id, outgoing.sent_event)
        except OperationalError:
            raise
        except (kombu.exceptions.OperationalError, MessageNacked, ConnectionError, OSError) as exc:
            if nacked(exc):
                raise OperationalError(
                    f"the broker {censor_url(self.broker_url)} refused {label} "
                    "(not confirmed: a full queue with overflow=reject-publish, say): the task is "
                    "not sent") from exc
            raise OperationalError(
                f"cannot publish {label} to {censor_url(self.broker_url)}: {exc}") from exc
        signals.after_task_publish.send_robust(
            sender=outgoing.task, body=outgoing.wire_body, exchange=outgoing.exchange,
            routing_key=outgoing.routing_key, headers=outgoing.headers)

    # -- the outbox -------------------------------------------------------------------------
    def follows_transaction(self, on_commit: bool) -> bool:
        """Whether a publish now goes through the outbox, to happen only if the caller commits.

        ``on_commit`` (``delay_on_commit``), or any publish with ``task_outbox``, while a
        transaction is open on the outbox's database. Never on ``django://``: its message
        is a row written in the caller's transaction already.
        """
        if self.broker_url.startswith("django://") or not (on_commit or self.settings.task_outbox):
            return False
        return outbox.in_transaction(outbox.outbox_alias())

    def send_on_commit(self, outgoing: Outgoing, *, retry: bool | None = None,
                       retry_policy: Mapping[str, Any] | None = None) -> None:
        """Write ``outgoing`` to the outbox in the open transaction; send it once committed.

        Rolled back, the row goes with it and nothing is sent. Committed, it is sent at
        once and its row deleted; if that fails (the process dies, the broker is away), a
        worker sends it within ``RELAY_AFTER`` seconds (``relay_stranded``).
        """
        alias = outbox.outbox_alias()
        pk = outbox.keep(alias, outbox_fields(outgoing))

        def send_committed() -> None:
            try:
                self.send(outgoing, retry=retry, retry_policy=retry_policy)
            except OperationalError as exc:
                logger.warning("outbox: %s[%s] not sent after its commit (%s); a worker sends it "
                               "within %g s", outgoing.task, outgoing.task_id, exc, RELAY_AFTER)
                return
            outbox.forget(alias, pk)

        transaction.on_commit(send_committed, using=alias, robust=True)

    def relay_stranded(self, now: datetime, limit: int) -> int:
        """Send the outbox rows older than ``RELAY_AFTER``, then delete them; return how many.

        Their sender committed and did not send (it died, or the broker was away). One
        relay at a time: the caller holds the release lease.
        """
        alias = outbox.outbox_alias()
        rows = outbox.stranded(alias, now - timedelta(seconds=RELAY_AFTER), limit)
        for row in rows:
            self.send(outgoing_of_row(row), retry=False)
            outbox.forget(alias, row.pk)
        if rows:
            logger.info("outbox: %d message(s) sent that their publisher left behind", len(rows))
        return len(rows)

    def any_stranded(self, now: datetime) -> bool:
        return outbox.any_stranded(outbox.outbox_alias(), now - timedelta(seconds=RELAY_AFTER))

    def send_sent_event(self, producer: kombu.Producer, task_id: str, fields: Mapping[str, Any]) -> None:
        """Send ``task-sent`` on the producer that sent the task; never fail the call."""
        dispatcher = EventDispatcher(producer.connection, self._hostname, self._clock)
        try:
            dispatcher.publish(dispatcher.event("task-sent", **fields), producer=producer)
        except Exception as exc:  # fire-and-forget: the task is sent, its news may be lost
            logger.warning("task-sent event of %s not sent: %s", task_id, exc)

    def retry_policy(self, override: Mapping[str, Any] | None) -> dict[str, Any]:
        """Return the app's retry policy updated by ``override``, after checking its keys."""
        policy = dict(check_retry_policy(self.settings.task_publish_retry_policy,
                                         "task_publish_retry_policy"))
        policy.update(check_retry_policy(override or {}, "retry_policy"))
        return policy

    def republish(self, kept: KeptMessage) -> None:
        """Send a kept message (a dead letter) again as received, on a pooled producer.

        No retry: the caller (the console) says at once that the broker is away, and the
        message stays kept to try again.
        """
        try:
            # A bounded wait: a console request must not hang while every producer is busy.
            with self._pool.acquire(block=True,
                                    timeout=self.settings.broker_connection_timeout) as producer:
                republish(producer, kept)
        except (kombu.exceptions.OperationalError, kombu.exceptions.LimitExceeded,
                ConnectionError, OSError) as exc:
            raise OperationalError(
                f"cannot publish a kept message to {censor_url(self.broker_url)}: {exc}") from exc

    def close(self) -> None:
        """Release every pooled connection."""
        self._pool.force_close_all()
        self._connections.force_close_all()
        self._connection.release()


def outbox_fields(outgoing: Outgoing) -> dict[str, Any]:
    """The columns of the outbox row that keeps ``outgoing``."""
    queue = outgoing.queue
    return {"task_id": outgoing.task_id, "task_name": outgoing.task, "exchange": outgoing.exchange,
            "routing_key": outgoing.routing_key, "queue": queue.name,
            "queue_exchange": queue.exchange.name, "queue_exchange_type": queue.exchange.type,
            "queue_routing_key": queue.routing_key or "", "content_type": outgoing.content_type,
            "content_encoding": outgoing.content_encoding, "body": body_bytes(outgoing),
            "headers": dict(outgoing.headers), "properties": dict(outgoing.properties)}


def body_bytes(outgoing: Outgoing) -> bytes:
    """The body as bytes: kombu's text serializers (json) give a str in its content encoding."""
    body = outgoing.body
    return body.encode(outgoing.content_encoding or "utf-8") if isinstance(body, str) else body


def outgoing_of_row(row: Any) -> Outgoing:
    """The Outgoing an outbox row keeps, its queue declared as it was routed."""
    queue = kombu.Queue(row.queue, kombu.Exchange(row.queue_exchange, type=row.queue_exchange_type),
                        routing_key=row.queue_routing_key)
    return Outgoing(task=row.task_name, task_id=row.task_id, body=bytes(row.body),
                    content_type=row.content_type, content_encoding=row.content_encoding,
                    headers=dict(row.headers), properties=dict(row.properties),
                    exchange=row.exchange, routing_key=row.routing_key, queue=queue)


def nacked(error: BaseException) -> bool:
    """Whether ``error`` is, or was raised for, a publish the broker did not confirm.

    kombu retries a nack by the retry policy (py-amqp counts it recoverable), then raises
    its own OperationalError with an empty message; the nack is in its cause.
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, MessageNacked):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def speaks_amqp(connection: kombu.Connection) -> bool:
    """Whether ``connection`` goes through py-amqp, the transport that has publisher confirms."""
    try:
        transport = connection.transport
    except Exception:  # an unknown transport: the first publish names the problem
        return False
    return getattr(transport, "driver_name", "") == "py-amqp"


class KeptMessage(Protocol):
    """A message kept as received (ParkedMessage, DeadLetter): what republish() reads."""

    queue: str
    exchange: str
    routing_key: str
    content_type: str
    content_encoding: str
    body: Any  # bytes, or the memoryview some database drivers return for a BinaryField
    headers: Any
    properties: Any


def republish(producer: kombu.Producer, kept: KeptMessage) -> None:
    """Send a kept message as it was received: the same body, headers and properties."""
    # Through the default exchange to the queue it came from; else as it was first routed.
    exchange, routing_key = ("", kept.queue) if kept.queue else (kept.exchange, kept.routing_key)
    producer.publish(
        bytes(kept.body), exchange=exchange, routing_key=routing_key,
        content_type=kept.content_type, content_encoding=kept.content_encoding or "binary",
        headers=dict(kept.headers), retry=False, **publish_properties(kept.properties),
    )


def publish_properties(received: Mapping[str, Any]) -> dict[str, Any]:
    """Return the kept properties as ``Producer.publish`` takes them.

    ``expiration`` is received as the wire has it, a string of milliseconds, and
    ``publish`` takes seconds (it multiplies by 1000 again).
    """
    properties = dict(received)
    if properties.get("expiration") is not None:
        properties["expiration"] = float(properties["expiration"]) / 1000
    return properties


def check_retry_policy(policy: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Refuse keys kombu's retry loop does not know (a typo would fail every publish)."""
    unknown = set(policy) - RETRY_POLICY_KEYS
    if unknown:
        raise ImproperlyConfigured(
            f"{name}: unknown key(s) {sorted(unknown)}, expected some of {sorted(RETRY_POLICY_KEYS)}"
        )
    return policy


def wire_exchange(route: Route) -> str:
    """Return the exchange to publish to: ``""`` for a queue's own direct route.

    The default exchange delivers to the queue named by the routing key on every broker,
    and spares kombu's virtual transports (Redis) a binding look-up per message, as Celery
    does. The queue is still declared with its own exchange, so consumers see no change.
    """
    queue = route.queue
    if (route.exchange == queue.name and route.routing_key == queue.name
            and queue.exchange.type == "direct"):
        return ""
    return route.exchange


class EventDispatcher:
    """Send Celery events (``utils/events.py``) on one broker connection, in one thread.

    A producer's (``task-sent``) goes on a pooled producer; the worker's on a connection
    of its own, from its event sender thread. kombu connections are not thread-safe: one
    dispatcher is used by one thread at a time.
    """

    def __init__(self, connection: kombu.Connection, hostname: str, clock: events.Clock,
                 pid: int | None = None) -> None:
        self.connection = connection
        self.hostname = hostname
        self.clock = clock
        self.pid = pid
        self.exchange = events.event_exchange(connection.transport.driver_type)
        self._producer: kombu.Producer | None = None

    def event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """Return the body of an event sent now, its clock moved forward."""
        return events.build_event(event_type, hostname=self.hostname, clock=self.clock.forward(),
                                  pid=self.pid, **fields)

    def send(self, event_type: str, **fields: Any) -> None:
        self.publish(self.event(event_type, **fields))

    def publish(self, event: Mapping[str, Any], producer: kombu.Producer | None = None) -> None:
        """Publish a built ``event``; raise the broker's error (the caller drops or retries)."""
        if producer is None:
            if self._producer is None:
                self._producer = kombu.Producer(self.connection.default_channel)
                self.exchange(self._producer.channel).declare()
            producer = self._producer
        producer.publish(dict(event), exchange=self.exchange.name,
                         routing_key=events.routing_key(event["type"]), serializer="json",
                         headers={"hostname": event["hostname"]},
                         delivery_mode=events.DELIVERY_MODE, declare=[self.exchange])

    def reset(self) -> None:
        """Forget the producer (after a connection error: the next publish makes a new one)."""
        self._producer = None


def sent_event_fields(message: protocol.TaskMessage, route: Route, exchange: str) -> dict[str, Any]:
    """The fields of Celery's ``task-sent`` event for ``message``."""
    return {
        "uuid": message.id, "root_id": message.root_id, "parent_id": message.parent_id,
        "name": message.task, "args": message.argsrepr or repr(tuple(message.args)),
        "kwargs": message.kwargsrepr or repr(dict(message.kwargs)), "retries": message.retries,
        "eta": message.eta.isoformat() if message.eta is not None else None,
        "expires": message.expires.isoformat() if message.expires is not None else None,
        "queue": route.queue.name, "exchange": exchange, "routing_key": route.routing_key,
    }
