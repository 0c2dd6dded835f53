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

from tests.integration.conftest import AMQP_VHOST, DATABASES, REDIS_DB, only_brokers
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
