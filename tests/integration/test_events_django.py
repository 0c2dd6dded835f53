"""django://: an event that no queue is bound to costs a binding look-up and writes nothing."""

from __future__ import annotations

import kombu
import pytest

from djtasks.models import QueueMessage
from djtasks.publish import EventDispatcher
from djtasks.utils.events import LamportClock
from tests.integration.conftest import DATABASES, only_brokers

pytestmark = [pytest.mark.integration, only_brokers("django-sqlite", "django-postgres"),
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


def test_event_with_nobody_listening_writes_nothing(broker, app_settings):
    before = QueueMessage.objects.using(broker.database).count()
    with kombu.Connection(broker.broker_url) as connection:
        dispatcher = EventDispatcher(connection, "nobody@localhost", LamportClock())
        for _ in range(3):
            dispatcher.send("worker-heartbeat", freq=1.0)
        assert dispatcher.clock.value == 3
    assert QueueMessage.objects.using(broker.database).count() == before
