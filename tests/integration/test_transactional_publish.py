"""On django://, publishing inside transaction.atomic() belongs to the caller's transaction."""

from __future__ import annotations

import pytest
from django.db import transaction

from djtasks import states
from tests.integration.conftest import DATABASES, only_brokers, queue_size
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES),
              only_brokers("django-sqlite", "django-postgres")]


class RollbackError(Exception):
    pass


def alias_of(broker) -> str:
    return broker.broker_url.removeprefix("django://") or "default"


def test_rolled_back_publish_sends_nothing(worker, app_settings, broker, queue_name, tmp_path):
    record = tmp_path / "ran.txt"
    sent = []

    def publish_then_fail() -> None:
        with transaction.atomic(using=alias_of(broker)):
            sent.append(tasks.record.delay(str(record), "never"))
            raise RollbackError

    with pytest.raises(RollbackError):
        publish_then_fail()
    rolled_back = sent[0]
    committed = tasks.record.delay(str(record), "always")
    assert committed.get(timeout=20) == "always"
    assert record.read_text().split() == ["always"]
    assert rolled_back.state == states.PENDING
    assert queue_size(broker, queue_name) == 0


def test_committed_publish_runs_after_commit(worker, app_settings, broker):
    with transaction.atomic(using=alias_of(broker)):
        result = tasks.add.delay(5, 5)
    assert result.get(timeout=20) == 10
