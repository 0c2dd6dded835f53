"""The django:// kombu transport on SQLite (``default``) and PostgreSQL (``postgres``).

Run as ``python -m tests.integration.test_django_transport COMMAND ...`` this module is
also the consumer process that the multi-process tests start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from time import monotonic, sleep

import django
import pytest
from django.apps import apps
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu import Connection, Consumer, Exchange, Producer, Queue

from djtasks.exceptions import ImproperlyConfigured

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "postgres"]),
]

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "transport-tests"


def make_queue(name: str = QUEUE) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def messages(alias: str):
    return apps.get_model("djtasks", "QueueMessage").objects.using(alias)


def publish(conn: Connection, body: object, queue: Queue | None = None, **options) -> None:
    queue = queue or make_queue()
    options.setdefault("declare", [queue])
    Producer(conn).publish(body, exchange=queue.exchange, routing_key=queue.routing_key, **options)


def drain(conn: Connection, n: int, *, prefetch: int = 10, ack: bool = True,
          timeout: float = 10) -> list:
    """Consume ``n`` messages from QUEUE and return (body, message) pairs in order."""
    received: list = []

    def on_message(body, message):
        received.append((body, message))
        if ack:
            message.ack()

    with Consumer(conn, [make_queue()], callbacks=[on_message], prefetch_count=prefetch):
        while len(received) < n:
            conn.drain_events(timeout=timeout)
    return received


def wait_until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = monotonic() + timeout
    while not predicate():
        assert monotonic() < deadline, "condition not met in time"
        sleep(0.02)


def wait_for_rows(alias: str, count: int = 0) -> None:
    """Wait until ``count`` rows are left: an ack deletes its row later, with others."""
    wait_until(lambda: messages(alias).count() == count)


@pytest.fixture(params=["default", "postgres"])
def alias(request) -> str:
    return request.param


@pytest.fixture
def broker(alias) -> Iterator[Callable[..., Connection]]:
    """Open ``django://<alias>`` connections with transport options; close them after."""
    opened: list[Connection] = []

    def connect(**options) -> Connection:
        conn = Connection(f"django://{alias}", transport_options=options)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def spawn(*args: str) -> subprocess.Popen:
    # DJANGO_SETTINGS_MODULE comes from pytest-django, which set it in os.environ.
    env = {**os.environ, "DJTASKS_TESTS_ON_TEST_DBS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.test_django_transport", *args],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> str:
    try:
        out, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, out
    return out


# -- basics ---------------------------------------------------------------------------------


def test_round_trip_through_a_direct_exchange(broker, alias):
    conn = broker()
    publish(conn, {"hello": "world"}, headers={"h": 1})

    [(body, message)] = drain(conn, 1)

    assert body == {"hello": "world"}
    assert message.headers == {"h": 1}
    assert message.delivery_info["routing_key"] == QUEUE
    assert not message.delivery_info.get("redelivered")
    wait_for_rows(alias)


def test_the_url_host_names_the_database_alias(alias):
    assert Connection("django://").transport.alias == "default"
    assert Connection(f"django://{alias}").transport.alias == alias
    with pytest.raises(ImproperlyConfigured, match=r"expected an alias of settings\.DATABASES"):
        Connection(f"django://{alias}-missing").transport  # noqa: B018 - builds the transport


@pytest.mark.parametrize("prefetch", [1, 10])
def test_higher_priority_first_then_fifo(broker, prefetch):
    conn = broker()
    for n, priority in enumerate([0, 5, 9, 1, 5, 9, 0]):
        publish(conn, {"n": n}, priority=priority)

    order = [body["n"] for body, _ in drain(conn, 7, prefetch=prefetch)]

    assert order == [2, 5, 1, 4, 3, 0, 6]


def test_fifo_across_batches(broker):
    conn = broker()
    for n in range(20):
        publish(conn, n)

    assert [body for body, _ in drain(conn, 20, prefetch=3)] == list(range(20))


def test_size_counts_ready_messages_and_purge_removes_them(broker, alias):
    conn = broker()
    for n in range(5):
        publish(conn, n)
    queue = make_queue()(conn.default_channel)
    assert queue.queue_declare(passive=True).message_count == 5

    other = broker()
    drain(other, 1, prefetch=1, ack=False)  # one leased: not ready
    assert queue.queue_declare(passive=True).message_count == 4

    assert queue.purge() == 4
    assert queue.queue_declare(passive=True).message_count == 0
    assert messages(alias).count() == 1  # the leased one stays until acked or given back


def test_purge_on_the_consuming_channel_drops_its_prefetched_rows(broker, alias):
    conn = broker()
    for n in range(5):
        publish(conn, n)
    [(_, message)] = drain(conn, 1, prefetch=10, ack=False)
    channel = conn.default_channel
    assert make_queue()(channel).queue_declare(passive=True).message_count == 4

    assert make_queue()(channel).purge() == 4
    message.ack()
    wait_for_rows(alias)


def test_get_leases_a_single_row(broker, alias):
    conn = broker()
    for n in range(3):
        publish(conn, n)
    queue = make_queue()(conn.default_channel)

    message = queue.get()

    assert message.payload == 0
    assert queue.queue_declare(passive=True).message_count == 2
    message.ack()
    assert queue.get(no_ack=True).payload == 1
    wait_for_rows(alias, 1)


# -- acknowledgement ------------------------------------------------------------------------


def test_a_taken_message_is_leased_until_ack_deletes_it(broker, alias):
    conn = broker(visibility_timeout=600)
    publish(conn, "x")

    [(_, message)] = drain(conn, 1, ack=False)

    row = messages(alias).get()
    assert row.delivery_count == 1
    assert row.visible_at > timezone.now() + timedelta(seconds=500)
    message.ack()
    wait_for_rows(alias)


def test_reject_with_requeue_delivers_again(broker, alias):
    conn = broker()
    publish(conn, "x")
    [(_, message)] = drain(conn, 1, ack=False)

    message.reject(requeue=True)
    [(body, again)] = drain(broker(), 1)

    assert body == "x"
    assert again.delivery_info["redelivered"] is True
    wait_for_rows(alias)


def test_reject_without_requeue_deletes(broker, alias):
    conn = broker()
    publish(conn, "x")
    [(_, message)] = drain(conn, 1, ack=False)

    message.reject()

    assert not messages(alias).exists()


def test_no_ack_consumer_deletes_as_it_takes(broker, alias):
    conn = broker()
    publish(conn, "x")
    received = []
    with Consumer(conn, [make_queue()], callbacks=[lambda b, m: received.append(b)], no_ack=True):
        conn.drain_events(timeout=10)

    assert received == ["x"]
    assert not messages(alias).exists()


def test_close_gives_back_unacked_and_prefetched_messages(broker, alias):
    conn = broker()
    for n in range(5):
        publish(conn, n)
    received = []
    consumer = Consumer(conn, [make_queue()], callbacks=[lambda b, m: received.append(b)],
                        prefetch_count=10)
    consumer.consume()
    conn.drain_events(timeout=10)  # one delivered, four leased in the channel's buffer
    assert received == [0]
    assert messages(alias).filter(visible_at__gt=timezone.now()).count() == 5

    conn.close()  # a warm shutdown: the consumer is still active

    other = broker()
    assert make_queue()(other.default_channel).queue_declare(passive=True).message_count == 5
    received = drain(other, 5)
    assert [body for body, _ in received] == [0, 1, 2, 3, 4]
    assert [bool(m.delivery_info.get("redelivered")) for _, m in received] == [True] + [False] * 4


def test_a_dead_consumers_message_is_delivered_after_the_visibility_timeout(broker, alias):
    conn = broker(polling_interval=0.05)
    publish(conn, {"job": 1})

    out = finish(spawn("take-and-die", alias))

    assert json.loads(out) == {"job": 1}
    assert messages(alias).count() == 1  # the dead consumer never acked
    [(body, message)] = drain(conn, 1)
    assert body == {"job": 1}
    assert message.delivery_info["redelivered"] is True


def test_an_ack_not_yet_deleted_when_its_consumer_dies_is_delivered_again(broker, alias):
    # Acks are deleted in batches: the promise for the window before the delete is at least once.
    conn = broker(polling_interval=0.05)
    publish(conn, {"job": 2})

    out = finish(spawn("ack-and-die", alias))

    assert json.loads(out) == {"job": 2}
    assert messages(alias).count() == 1  # acked, but the delete never ran
    [(body, message)] = drain(conn, 1)
    assert body == {"job": 2}
    assert message.delivery_info["redelivered"] is True


@pytest.mark.parametrize("how", ["ack", "requeue", "reject"])
def test_a_consumer_frozen_past_its_lease_does_not_settle_the_next_delivery(broker, alias, how):
    # A stalled worker (SIGSTOP, a long pause) wakes up after its row was delivered to
    # another consumer: its ack, requeue or reject must leave that delivery alone.
    conn = broker(polling_interval=0.05, visibility_timeout=30)
    publish(conn, {"job": 3})
    with subprocess.Popen(
            [sys.executable, "-m", "tests.integration.test_django_transport", "take-then-settle",
             alias, how], cwd=ROOT, env={**os.environ, "DJTASKS_TESTS_ON_TEST_DBS": "1"},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as frozen:
        try:
            assert json.loads(frozen.stdout.readline()) == {"job": 3}
            frozen.send_signal(signal.SIGSTOP)  # no renewal from now on: its 1 s lease runs out
            [(body, message)] = drain(conn, 1, ack=False)  # taken again, by this consumer
            assert (body, message.delivery_info["redelivered"]) == ({"job": 3}, True)
            frozen.send_signal(signal.SIGCONT)
            frozen.stdin.write("go\n")
            frozen.stdin.flush()
            assert frozen.stdout.readline().strip() == "settled"
            assert frozen.wait(timeout=30) == 0
        finally:
            if frozen.poll() is None:
                frozen.send_signal(signal.SIGCONT)
                frozen.kill()
    [row] = messages(alias).all()
    assert row.visible_at > timezone.now(), "the row is still leased to its new consumer"
    message.ack()
    conn.default_channel.flush_acks()
    wait_for_rows(alias, 0)


@pytest.mark.parametrize("keeps_draining", [True, False], ids=["draining", "busy"])
def test_no_redelivery_while_the_consumer_renews_its_lease(broker, alias, keeps_draining):
    holder = broker(visibility_timeout=1)
    publish(holder, "long task")
    [(_, message)] = drain(holder, 1, prefetch=1, ack=False)
    other = broker(polling_interval=0.05)
    stolen = []

    # Three visibility timeouts; "busy" is a worker stuck in a task (solo pool) that
    # does not call drain_events at all: the lease must survive that too.
    with Consumer(other, [make_queue()], callbacks=[lambda b, m: stolen.append(b)]):
        deadline = monotonic() + 3
        while monotonic() < deadline:
            if keeps_draining:
                with pytest.raises(TimeoutError):
                    holder.drain_events(timeout=0.05)
            with pytest.raises(TimeoutError):
                other.drain_events(timeout=0.1)

    assert stolen == []
    message.ack()
    wait_for_rows(alias)


# -- transactions and wake-up ---------------------------------------------------------------


def test_publish_joins_the_callers_transaction(broker, alias):
    conn = broker()

    def publish_then_fail():
        with transaction.atomic(using=alias):
            publish(conn, "rolled back")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        publish_then_fail()
    assert not messages(alias).exists()

    with transaction.atomic(using=alias):
        publish(conn, "committed")
    assert [body for body, _ in drain(conn, 1)] == ["committed"]


def test_an_idle_consumer_is_woken_by_a_publish(broker, alias):
    # With a 30 s polling interval only a NOTIFY (PostgreSQL) or the backoff that starts
    # at a few milliseconds (SQLite) can deliver within the 10 s timeout.
    consumer = broker(polling_interval=30)
    publisher = broker()
    make_queue()(publisher.default_channel).declare()

    def publish_later():
        try:
            sleep(0.3)
            publish(publisher, "wake up")
        finally:
            connections.close_all()  # this thread's connections

    thread = threading.Thread(target=publish_later)
    received = []
    with Consumer(consumer, [make_queue()], callbacks=[lambda b, m: received.append(m)]):
        thread.start()
        consumer.drain_events(timeout=10)
    thread.join()

    assert [m.payload for m in received] == ["wake up"]
    received[0].ack()


# -- concurrency ----------------------------------------------------------------------------


def test_several_processes_get_each_message_exactly_once(broker, alias):
    consumers = [spawn("consume", alias) for _ in range(3)]
    try:
        for process in consumers:
            assert process.stdout.readline().strip() == "ready"
        conn = broker()
        for n in range(300):
            publish(conn, n, priority=5)
        for _ in consumers:
            publish(conn, "stop", priority=0)  # after all the work: lower priority
        results = [json.loads(finish(process)) for process in consumers]
    finally:
        for process in consumers:
            if process.poll() is None:
                process.kill()
                process.communicate()

    received = [n for result in results for n in result]
    assert sorted(received) == list(range(300))
    assert not messages(alias).exists()


# -- pinned query counts --------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 5, 40])
def test_query_counts(broker, alias, batch):
    # No flush by the renewer's thread during the test: what is counted is the consumer's.
    conn = broker(ack_flush_delay=3600)
    queue = make_queue()
    queue(conn.default_channel).declare()
    db = connections[alias]

    with CaptureQueriesContext(db) as publishing:
        publish(conn, 0, declare=None)
    assert len(publishing) == 1, publishing.captured_queries  # INSERT (+ NOTIFY, same statement)

    for n in range(1, batch):
        publish(conn, n, declare=None)
    received = []
    with Consumer(conn, [queue], callbacks=[lambda b, m: received.append(m)], prefetch_count=batch):
        with CaptureQueriesContext(db) as fetching:
            while len(received) < batch:
                conn.drain_events(timeout=10)
        assert len(fetching) == 1, fetching.captured_queries  # one lease of the whole batch

        with CaptureQueriesContext(db) as acking:
            received[0].ack()
        assert len(acking) == 0, acking.captured_queries  # deleted with the next fetch

        with CaptureQueriesContext(db) as rejecting:
            for message in received[1:]:
                message.reject()
        assert len(rejecting) == batch - 1

        publish(conn, "next", declare=None)
        with CaptureQueriesContext(db) as fetching_after_ack:
            while len(received) < batch + 1:
                conn.drain_events(timeout=10)
        # PostgreSQL deletes the acked row in the fetch's statement; SQLite just before it.
        assert len(fetching_after_ack) == (1 if db.vendor == "postgresql" else 2), (
            fetching_after_ack.captured_queries)
        assert messages(alias).count() == 1  # "next", leased
        received[-1].ack()
    conn.close()
    assert not messages(alias).exists(), "close deletes the acked rows"


def test_a_quiet_queue_is_asked_once_while_another_delivers(broker, alias, monkeypatch):
    # A recheck window longer than the test: what is pinned is the rule, not the timing.
    monkeypatch.setattr("djtasks.transport.channel.QUIET_RECHECK", 3600.0)
    conn = broker()
    busy, quiet = make_queue("transport-busy"), make_queue("transport-quiet")
    quiet(conn.default_channel).declare()
    for n in range(10):
        publish(conn, n, busy)
    received = []

    def on_message(body, message):
        received.append(body)
        message.ack()

    with Consumer(conn, [busy, quiet], callbacks=[on_message], prefetch_count=1):
        with CaptureQueriesContext(connections[alias]) as draining:
            while len(received) < 10:
                conn.drain_events(timeout=10)
        asked = [q for q in draining.captured_queries if "transport-quiet" in q["sql"]]
        assert len(asked) == 1, asked  # not once per message, as kombu's fair cycle would

        # Nothing left to deliver: the consumer forgets what it found empty before it waits,
        # so a message for the quiet queue is taken at once.
        publish(conn, "late", quiet)
        while len(received) < 11:
            conn.drain_events(timeout=10)
    assert received == [*range(10), "late"]


# -- child processes ------------------------------------------------------------------------


def take_and_die(alias: str) -> None:
    """Take one message with a 1 s lease, print it, and die without ack or close."""
    conn = Connection(f"django://{alias}", transport_options={"visibility_timeout": 1})
    got = []
    with Consumer(conn, [make_queue()], callbacks=[lambda b, m: got.append(b)], prefetch_count=1):
        conn.drain_events(timeout=30)
        print(json.dumps(got[0]), flush=True)
        os._exit(0)


def ack_and_die(alias: str) -> None:
    """Take one message with a 1 s lease, ack it, print it, and die before the delete."""
    conn = Connection(f"django://{alias}", transport_options={
        "visibility_timeout": 1, "ack_flush_delay": 3600})
    got = []

    def on_message(body, message):
        message.ack()  # pending: the next fetch, wait or close would delete it
        got.append(body)

    with Consumer(conn, [make_queue()], callbacks=[on_message], prefetch_count=1):
        conn.drain_events(timeout=30)
        print(json.dumps(got[0]), flush=True)
        os._exit(0)


def consume(alias: str) -> None:
    """Ack messages until a "stop" message; print the bodies received as JSON."""
    received: list = []
    stopped = []

    def on_message(body, message):
        if body == "stop":
            stopped.append(True)
        else:
            received.append(body)
        message.ack()

    with Connection(f"django://{alias}", transport_options={"polling_interval": 0.05}) as conn:
        with Consumer(conn, [make_queue()], callbacks=[on_message], prefetch_count=10):
            print("ready", flush=True)
            while not stopped:
                conn.drain_events(timeout=60)
    print(json.dumps(received), flush=True)


def take_then_settle(alias: str, how: str) -> None:
    """Take one message with a 1 s lease, say so, wait for a line on stdin, then settle it.

    The test freezes this process (SIGSTOP) past its lease in between, as a stalled worker
    is; ``how`` is ack, requeue or reject.
    """
    conn = Connection(f"django://{alias}", transport_options={"visibility_timeout": 1})
    got = []
    with Consumer(conn, [make_queue()], callbacks=[lambda b, m: got.append((b, m))],
                  prefetch_count=1):
        conn.drain_events(timeout=30)
        print(json.dumps(got[0][0]), flush=True)
        sys.stdin.readline()
        message = got[0][1]
        {"ack": message.ack, "requeue": lambda: message.reject(requeue=True),
         "reject": message.reject}[how]()
        conn.default_channel.flush_acks()
        print("settled", flush=True)
    conn.close()


if __name__ == "__main__":
    django.setup()
    {"take-and-die": take_and_die, "ack-and-die": ack_and_die, "consume": consume,
     "take-then-settle": take_then_settle}[sys.argv[1]](*sys.argv[2:])
