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
from typing import Any, Protocol

import kombu
from amqp.exceptions import MessageNacked
from kombu.pools import ProducerPool
from kombu.serialization import dumps as encode_body

from djtasks import protocol, signals
from djtasks.conf import Settings, censor_url
from djtasks.exceptions import ImproperlyConfigured, MessageTooLarge, OperationalError
from djtasks.routing import Route
from djtasks.utils import events

logger = logging.getLogger("djtasks.publish")

RETRY_POLICY_KEYS = frozenset({"max_retries", "interval_start", "interval_step", "interval_max"})


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
        wire = protocol.to_wire(message)
        policy = self.retry_policy(retry_policy)
        if retry is None:
            retry = self.settings.task_publish_retry
        priority = message.priority if message.priority is not None else route.priority
        exchange = wire_exchange(route)
        properties = {**wire.properties, "priority": priority}
        signals.before_task_publish.send_robust(
            sender=message.task, body=wire.body, exchange=exchange, routing_key=route.routing_key,
            headers=wire.headers, properties=properties, declare=[route.queue], retry_policy=policy)
        # Encoded here, once (kombu sends a body with a content type as it is), to refuse
        # what a worker would refuse before it is sent.
        content_type, content_encoding, body = encode_body(
            wire.body, serializer=serializer or self.settings.task_serializer)
        try:
            protocol.check_size(body, self.settings.task_max_message_size)
        except MessageTooLarge as exc:
            raise MessageTooLarge(f"{message.task}[{message.id}] is not sent: {exc}") from None
        try:
            with self._pool.acquire(block=True) as producer:
                producer.publish(
                    body,
                    exchange=exchange,
                    routing_key=route.routing_key,
                    content_type=content_type,
                    content_encoding=content_encoding,
                    headers=wire.headers,
                    declare=[route.queue],
                    retry=retry,
                    retry_policy=policy,
                    delivery_mode=2,
                    **properties,
                )
                if self.settings.task_send_sent_event:
                    self.send_sent_event(producer, message, route, exchange)
        except OperationalError:
            raise
        except (kombu.exceptions.OperationalError, MessageNacked, ConnectionError, OSError) as exc:
            if nacked(exc):
                raise OperationalError(
                    f"the broker {censor_url(self.broker_url)} refused {message.task}[{message.id}] "
                    "(not confirmed: a full queue with overflow=reject-publish, say): the task is "
                    "not sent") from exc
            raise OperationalError(
                f"cannot publish {message.task}[{message.id}] to {censor_url(self.broker_url)}: {exc}"
            ) from exc
        signals.after_task_publish.send_robust(sender=message.task, body=wire.body, exchange=exchange,
                                               routing_key=route.routing_key, headers=wire.headers)

    def send_sent_event(self, producer: kombu.Producer, message: protocol.TaskMessage,
                        route: Route, exchange: str) -> None:
        """Send ``task-sent`` on the producer that sent ``message``; never fail the call."""
        dispatcher = EventDispatcher(producer.connection, self._hostname, self._clock)
        try:
            dispatcher.publish(dispatcher.event("task-sent", **sent_event_fields(message, route, exchange)),
                               producer=producer)
        except Exception as exc:  # fire-and-forget: the task is sent, its news may be lost
            logger.warning("task-sent event of %s not sent: %s", message.id, exc)

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
