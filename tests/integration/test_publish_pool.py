"""One delay() does not open a connection: producers and connections come from a pool."""

from __future__ import annotations

import pytest
import redis

from tests.integration.conftest import DATABASES, only_brokers
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES),
              only_brokers("redis")]


def connections_accepted(url: str) -> int:
    """Redis's count of every connection it ever accepted (this look-up's own included)."""
    client = redis.Redis.from_url(url)
    try:
        return client.info("stats")["total_connections_received"]
    finally:
        client.close()


def test_fifty_publishes_reuse_the_first_connection(app_settings, broker):
    tasks.add.delay(0, 0)  # the first call connects the pool
    before = connections_accepted(broker.broker_url)
    for i in range(50):
        tasks.add.delay(i, i)
    after = connections_accepted(broker.broker_url)
    assert after - before == 1, "only the second look-up itself may have connected"
