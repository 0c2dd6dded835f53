"""kill -9 of a worker under acks_late: django:// delivers the message again after the
visibility timeout, and never while its worker lives (the lease is renewed)."""

from __future__ import annotations

import pytest

import djtasks
from djtasks import states
from tests.integration.conftest import DATABASES, only_brokers, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES),
              only_brokers("django-sqlite", "django-postgres")]


def test_kill_9_under_acks_late_redelivers(worker_factory, app_settings, broker, tmp_path):
    options = '{"visibility_timeout": 3}'
    env = {"DJTASKS_BROKER_TRANSPORT_OPTIONS": options}
    record = tmp_path / "late.txt"
    first = worker_factory("-c", "1", env=env)
    result = tasks.record_late.delay(str(record), "once", 1.0)
    wait_until(lambda: "start" in record.read_text() if record.exists() else False,
               message="the task started")
    first.kill_group()

    worker_factory("-c", "1", env=env)
    assert result.get(timeout=60) == "once"
    lines = record.read_text().split("\n")
    assert lines.count("start once") == 2, "redelivered after the visibility timeout"
    assert lines.count("done once") == 1
    assert djtasks.app.AsyncResult(result.id).state == states.SUCCESS
