"""A worker whose broker connection is cut reconnects and goes on; nothing is lost.

The cut is real: RabbitMQ is told to close every connection, Redis to kill every client,
PostgreSQL to terminate every backend of the test database. (SQLite has no connection to
cut, so django:// on SQLite is not in this module.)
"""

from __future__ import annotations

import subprocess

import pytest
import redis
from django.db import connections

from tests.integration.conftest import DATABASES, only_brokers
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES),
              only_brokers("django-postgres", "amqp", "redis")]


def cut_connections(broker) -> None:
    if broker.name == "amqp":
        subprocess.run(["rabbitmqctl", "close_all_connections", "djtasks fault injection"],
                       check=True, capture_output=True, timeout=60)
    elif broker.name == "redis":
        client = redis.Redis.from_url(broker.broker_url)
        try:
            client.client_kill_filter(_type="normal", skipme=True)
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
