"""A worker whose broker connection is cut reconnects and goes on; nothing is lost.

The cut is real: RabbitMQ is told to close every connection of the test virtual host, Redis
to kill every client of the test database, PostgreSQL to terminate every backend of the test
database. (SQLite has no connection to
cut, so django:// on SQLite is not in this module.)
"""

from __future__ import annotations

import contextlib
import subprocess

import pytest
import redis
from django.db import connections

from tests.integration.conftest import AMQP_VHOST, DATABASES, REDIS_DB, only_brokers, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES),
              only_brokers("django-postgres", "amqp", "redis")]


def cut_connections(broker) -> None:
    if broker.name == "amqp":
        subprocess.run(["rabbitmqctl", "close_all_connections", "--vhost", AMQP_VHOST,
                        "djtasks fault injection"], check=True, capture_output=True, timeout=60)
    elif broker.name == "redis":
        client = redis.Redis.from_url(broker.broker_url)
        try:
            # Only this run's database: another xdist worker's clients are not ours to cut.
            mine = client.client_id()
            for each in client.client_list(_type="normal"):
                if int(each["db"]) == REDIS_DB and int(each["id"]) != mine:
                    with contextlib.suppress(redis.ResponseError):  # gone already
                        client.client_kill_filter(_id=int(each["id"]))
        finally:
            client.close()
    else:
        with connections["postgres"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def test_worker_reconnects_after_the_broker_cut_its_connection(worker, app_settings, broker):
    assert tasks.add.delay(1, 1).get(timeout=20) == 2
    cut_connections(broker)
    # On django:// the broker is the database: the worker waits out a database error.
    worker.wait_for_line(r"connection to broker lost|connected again|database error", timeout=30)
    results = [tasks.add.delay(i, i) for i in range(10)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(10)]
    assert worker.process.poll() is None, "the worker must survive the cut"


DRAIN = 2000
CUTS = 2


def test_cuts_in_the_middle_of_an_acks_late_drain_lose_nothing(worker, app_settings, broker,
                                                               tmp_path):
    """2,000 acks_late tasks, the broker link cut twice while they drain: every one runs.

    A task whose run was under way, or done but not yet acknowledged, when its connection
    went is delivered again (at least once): duplicates are bounded by the worker's
    prefetch window at each cut, and counted.
    """
    if broker.name == "redis":
        # Measured 2026-12-07: a task of the drain did not come back within 180 s. kombu's
        # Redis transport keeps a killed connection's unacknowledged messages until the
        # visibility timeout (an hour), and loses one taken by BRPOP but not yet booked.
        # Issue 13, item 1 (an atomic BLMOVE into a per-worker list) is what fixes it.
        pytest.skip("Redis: unacknowledged messages of a cut connection wait for the "
                    "visibility timeout (issue 13, item 1)")
    path = tmp_path / "ran.txt"
    results = [tasks.record_late.delay(str(path), i) for i in range(DRAIN)]

    def done() -> int:
        return sum(1 for line in path.read_text().splitlines() if line.startswith("done ")) \
            if path.exists() else 0

    for cut in range(1, CUTS + 1):
        wait_until(lambda cut=cut: done() >= DRAIN * cut // (CUTS + 1), timeout=120,
                   message=f"{cut}/{CUTS + 1} of the drain")
        cut_connections(broker)
    assert [r.get(timeout=180) for r in results] == list(range(DRAIN))
    ran = [int(line.split()[1]) for line in path.read_text().splitlines() if line.startswith("done ")]
    lost = set(range(DRAIN)) - set(ran)
    duplicates = len(ran) - len(set(ran))
    print(f"{broker.name}: {DRAIN} sent, {len(lost)} lost, {duplicates} duplicates, {CUTS} cuts")
    assert not lost
    window = 2 * 4 * 2  # concurrency 2, prefetch multiplier 4, per process and cut, with margin
    assert duplicates <= CUTS * window
    assert worker.process.poll() is None, "the worker must survive the cuts"
