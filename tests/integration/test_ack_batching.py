"""django:// deletes acked rows in batches: what a kill -9 and a warm shutdown do to them.

The solo pool runs the task in the worker's main thread, so once it has acked the task
(on receipt: acks_late is off) and started it, nothing fetches or waits until the task
returns: the ack stays pending. Neither the lease renewal nor the renewer's flush comes
within the test (both a minute away), so the pending ack is the consumer's alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.apps import apps
from django.utils import timezone

from tests.integration.conftest import DATABASES, only_brokers, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES),
              only_brokers("django-sqlite", "django-postgres")]

SLOW = 5.0  # long enough to act while it runs
LATE_FLUSH = {"DJTASKS_BROKER_TRANSPORT_OPTIONS": json.dumps(
    {"visibility_timeout": 180, "ack_flush_delay": 60})}


def starts(record: Path) -> int:
    """How many times the slow task started (clock_in writes a line as it starts)."""
    if not record.exists():
        return 0
    return sum(1 for line in record.read_text().splitlines() if line.startswith("slow "))


def rows(broker, queue: str):
    model = apps.get_model("djtasks", "QueueMessage")
    return model.objects.using(broker.database).filter(queue=queue)


def start_slow_task(worker_factory, broker, queue_name, record: Path):
    worker = worker_factory("-P", "solo", env=LATE_FLUSH)
    result = tasks.clock_in.delay(str(record), "slow", SLOW)
    wait_until(lambda: starts(record) == 1, message="the task started")
    # Acked and running, yet its row is still in the table: the delete waits.
    assert rows(broker, queue_name).count() == 1
    return worker, result


def test_a_kill_9_before_the_delete_delivers_the_acked_message_again(
        worker_factory, app_settings, broker, queue_name, tmp_path):
    record = tmp_path / "starts.txt"
    first, result = start_slow_task(worker_factory, broker, queue_name, record)

    first.kill_group()
    # What the visibility timeout does three minutes later; the test does not wait for it.
    rows(broker, queue_name).update(visible_at=timezone.now())
    worker_factory("-P", "solo")

    assert result.get(timeout=60) == "slow"
    assert starts(record) == 2, "delivered again: at least once, nothing lost"
    wait_until(lambda: not rows(broker, queue_name).exists(), message="the second ack deleted")


def test_a_warm_shutdown_deletes_the_acked_messages(
        worker_factory, app_settings, broker, queue_name, tmp_path):
    record = tmp_path / "starts.txt"
    first, result = start_slow_task(worker_factory, broker, queue_name, record)

    assert first.stop(timeout=60) == 0  # SIGTERM: the task finishes, then the worker exits

    assert result.get(timeout=10) == "slow"
    assert not rows(broker, queue_name).exists(), "the close deleted the acked row"
    assert starts(record) == 1
