"""Queue depths of the admin console over every broker: waiting counts, draining, and purge."""

from __future__ import annotations

import pytest

import djtasks
from djtasks.dashboard.depths import queue_depths
from tests.integration.conftest import DATABASES, only_brokers, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


def waiting(name: str) -> int | None:
    depths = queue_depths(djtasks.app, [name])
    assert not depths.error, depths.error
    return depths.queues[0].waiting


def test_waiting_messages_are_counted_then_drain_when_a_worker_starts(
        app_settings, queue_name, worker_factory):
    results = [tasks.add.delay(number, 1) for number in range(5)]
    assert waiting(queue_name) == 5
    worker_factory("-c", "2")
    wait_until(lambda: waiting(queue_name) == 0, message="the queue drained")
    # Waiting 0 means delivered, not done: let them finish so none goes back at shutdown.
    assert [result.get(timeout=20) for result in results] == [1, 2, 3, 4, 5]


def test_purge_from_the_admin_empties_exactly_that_queue(app_settings, queue_name, admin_client):
    other = f"{queue_name}-other"
    for number in range(4):
        tasks.add.apply_async((number, 1))
    for number in range(2):
        tasks.add.apply_async((number, 2), queue=other)
    try:
        assert (waiting(queue_name), waiting(other)) == (4, 2)
        page = admin_client.get(f"/admin/djtasks/queue/{queue_name}/purge/").content.decode()
        assert f"Purge 4 messages from queue {queue_name}?" in page
        response = admin_client.post(f"/admin/djtasks/queue/{queue_name}/purge/", follow=True)
        assert f"Purged 4 messages from {queue_name}" in response.content.decode()
        assert (waiting(queue_name), waiting(other)) == (0, 2)
    finally:
        djtasks.app.control.purge([other])


@only_brokers("redis")  # priority sub-queues are Redis' own
def test_redis_priority_sub_queues_are_summed(broker, app_settings, queue_name):
    for priority in (0, 0, 5, 9, 9):
        tasks.add.apply_async((1, 1), priority=priority)
    with djtasks.app.connection() as connection:
        client = connection.default_channel.client
        keys = set(client.keys(f"{queue_name}*"))
    assert len(keys) > 1, keys  # the messages did go to more than one list
    try:
        assert waiting(queue_name) == 5
    finally:
        djtasks.app.control.purge([queue_name])


def test_messages_a_worker_holds_read_as_unacked_where_the_broker_tells(
        broker, app_settings, queue_name, worker_factory, tmp_path):
    # acks_late: the task running is unacknowledged in every mode, also where the worker
    # takes one message at a time (consuming children on Redis and django://).
    results = [tasks.record_late.delay(str(tmp_path / "ran"), str(n), seconds=1.0)
               for n in range(4)]
    worker_factory("-c", "1")

    def held() -> object:
        # Fewer waiting: the worker took some (all four, unless it takes one at a time).
        depth = queue_depths(djtasks.app, [queue_name]).queues[0]
        return depth.waiting < 4 and (depth.unacked is None or depth.unacked >= 1) and depth

    depth = wait_until(held, message="the worker holds the messages")
    if broker.broker_url.startswith("amqp"):
        assert depth.unacked is None  # AMQP does not tell; the page shows "—"
    else:
        assert depth.unacked >= 1
    for result in results:
        result.get(timeout=30)
