"""The django:// transport keeps a task message with an eta invisible until it is due."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu import Connection, Consumer

from tests.integration.test_django_transport import QUEUE, make_queue, messages, publish, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "postgres"]),
]


@pytest.fixture(params=["default", "postgres"])
def alias(request) -> str:
    return request.param


@pytest.fixture
def conn(alias):
    connection = Connection(f"django://{alias}", transport_options={"polling_interval": 0.05})
    yield connection
    connection.close()


def take(conn: Connection, timeout: float) -> list:
    """Return the bodies delivered within ``timeout`` seconds (acked)."""
    received = []

    def on_message(body, message):
        received.append(body)
        message.ack()

    with Consumer(conn, [make_queue()], callbacks=[on_message], prefetch_count=10):
        try:
            conn.drain_events(timeout=timeout)
        except TimeoutError:
            pass
    return received


def test_a_message_with_an_eta_is_stored_visible_at_its_eta(conn, alias):
    eta = timezone.now() + timedelta(hours=1)
    publish(conn, "later", headers={"eta": eta.isoformat()})
    publish(conn, "now", headers={"eta": None})

    at_once, later = messages(alias).order_by("visible_at")
    assert later.visible_at == eta
    assert later.created_at == eta  # a requeue puts it back there, not earlier
    assert at_once.visible_at <= timezone.now()
    assert take(conn, timeout=0.5) == ["now"]  # the eta message is not delivered early
    wait_until(lambda: messages(alias).count() == 1)  # "now", acked, is deleted a little later


def test_a_message_is_delivered_once_its_eta_passes(conn, alias):
    eta = timezone.now() + timedelta(seconds=1)
    publish(conn, "soon", headers={"eta": eta.isoformat()})

    received = take(conn, timeout=5)

    assert received == ["soon"]
    assert timezone.now() >= eta


def test_an_expiry_before_the_eta_makes_it_visible_at_the_expiry(conn, alias):
    now = timezone.now()
    headers = {"eta": (now + timedelta(hours=1)).isoformat(),
               "expires": (now + timedelta(minutes=5)).isoformat()}
    publish(conn, "x", headers=headers)

    assert messages(alias).get().visible_at == now + timedelta(minutes=5)


@pytest.mark.parametrize("eta", ["", "not a date", None])
def test_an_absent_or_unreadable_eta_is_visible_at_once(conn, alias, eta):
    before = timezone.now()
    publish(conn, "x", headers={"eta": eta})

    assert before <= messages(alias).get().visible_at <= timezone.now()


def test_an_eta_in_the_past_keeps_the_publish_order(conn, alias):
    publish(conn, "first")
    publish(conn, "second", headers={"eta": (timezone.now() - timedelta(hours=1)).isoformat()})

    assert take(conn, timeout=1) + take(conn, timeout=1) == ["first", "second"]


def test_a_requeued_eta_message_stays_hidden_until_its_eta(conn, alias):
    eta = timezone.now() + timedelta(hours=1)
    publish(conn, "later", headers={"eta": eta.isoformat()})
    row = messages(alias).get()
    messages(alias).filter(pk=row.pk).update(visible_at=timezone.now())  # as if it were due

    got = []
    with Consumer(conn, [make_queue()], callbacks=[lambda b, m: got.append(m)], prefetch_count=1):
        conn.drain_events(timeout=5)
    got[0].reject(requeue=True)

    assert messages(alias).get().visible_at == eta


def test_publishing_with_an_eta_is_still_one_statement(conn, alias):
    make_queue()(conn.default_channel).declare()
    with CaptureQueriesContext(connections[alias]) as publishing:
        publish(conn, "x", declare=None, headers={"eta": timezone.now().isoformat()})
    assert len(publishing) == 1, publishing.captured_queries
    assert messages(alias).get().queue == QUEUE
