"""The django:// transport's bindings in the database: fanout exchanges, replies across processes.

Each kombu ``Connection`` has its own transport and so its own in-memory binding state, as
separate processes do; these tests use one connection per simulated process.
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.apps import apps
from kombu import Connection, Consumer, Exchange, Producer, Queue

from tests.integration import test_django_transport as transport_tests

# The fixtures of the transport tests: django://default (SQLite) and django://postgres.
alias = transport_tests.alias
broker = transport_tests.broker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "postgres"]),
]

BROADCAST = Exchange("fanout-tests", type="fanout", durable=False)


def queued(alias: str) -> Counter:
    """Count the waiting messages per queue."""
    rows = apps.get_model("djtasks", "QueueMessage").objects.using(alias)
    return Counter(rows.values_list("queue", flat=True))


def bindings(alias: str):
    return apps.get_model("djtasks", "QueueBinding").objects.using(alias)


def bind(conn: Connection, queue: Queue) -> None:
    queue(conn.default_channel).declare()


def broadcast(conn: Connection, body: object, routing_key: str = "") -> None:
    Producer(conn).publish(body, exchange=BROADCAST, routing_key=routing_key, declare=[BROADCAST])


def test_a_fanout_message_reaches_every_bound_queue_once(broker, alias):
    workers = [broker() for _ in range(3)]
    for n, conn in enumerate(workers):
        bind(conn, Queue(f"node-{n}", BROADCAST))
    # A second binding of the same queue (another key): still one copy for it.
    bind(workers[0], Queue("node-0", BROADCAST, routing_key="other"))

    broadcast(broker(), {"method": "ping"})

    assert queued(alias) == {"node-0": 1, "node-1": 1, "node-2": 1}
    received = []
    with Consumer(workers[1], [Queue("node-1", BROADCAST)],
                  callbacks=[lambda body, message: (received.append(body), message.ack())]):
        workers[1].drain_events(timeout=10)
    assert received == [{"method": "ping"}]
    transport_tests.wait_until(lambda: queued(alias) == {"node-0": 1, "node-2": 1})  # acks wait a little


def test_a_fanout_exchange_without_queues_drops_the_message(broker, alias):
    broadcast(broker(), "nobody listens")
    assert queued(alias) == {}


def test_bindings_survive_a_new_connection(broker, alias):
    first = broker()
    bind(first, Queue("node-a", BROADCAST))
    first.close()

    broadcast(broker(), "after the binder left")

    assert queued(alias) == {"node-a": 1}


def test_a_direct_reply_reaches_a_queue_only_another_process_bound(broker, alias):
    replies = Exchange("reply-tests", type="direct", durable=False)
    asker = broker()
    bind(asker, Queue("asker-replies", replies, routing_key="asker-1"))

    answerer = broker()  # binds nothing: it only knows the exchange and the key
    Producer(answerer).publish({"pong": True}, exchange=replies, routing_key="asker-1",
                               declare=[replies])
    Producer(answerer).publish("lost", exchange=replies, routing_key="nobody", declare=[replies])

    assert queued(alias) == {"asker-replies": 1}


def test_deleting_a_queue_removes_its_bindings_for_every_process(broker, alias):
    first, second = broker(), broker()
    bind(first, Queue("node-gone", BROADCAST))
    bind(second, Queue("node-stays", BROADCAST))
    broadcast(first, "before")

    Queue("node-gone", BROADCAST)(first.default_channel).delete()
    broadcast(second, "after")

    assert queued(alias) == {"node-stays": 2}
    assert list(bindings(alias).values_list("queue", flat=True)) == ["node-stays"]


def test_unbind_stops_the_copies(broker, alias):
    conn = broker()
    queue = Queue("node-unbound", BROADCAST)
    bind(conn, queue)
    queue(conn.default_channel).unbind_from(BROADCAST)

    broadcast(broker(), "to nobody")

    assert queued(alias) == {}
    assert not bindings(alias).exists()
