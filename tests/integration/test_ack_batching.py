"""django:// deletes acked rows in batches: what a kill -9 and a warm shutdown do to them.

The solo pool runs the task in the worker's main thread, so a task that kills its process
kills the worker. Its early ack (acks_late is off) is therefore deleted from the table
before the task runs, not batched with later ones: the task is not delivered again to kill
the next worker too (at most once, as an early ack promises). Neither the lease renewal
nor the renewer's flush comes within the test (both a minute away).
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
    # Acked before it runs, in the table too: a worker killed now does not get it back.
    assert not rows(broker, queue_name).exists()
    return worker, result


def test_an_early_acked_task_that_kills_a_solo_worker_is_not_delivered_again(
        worker_factory, app_settings, broker, queue_name, tmp_path):
    record = tmp_path / "starts.txt"
    first, _result = start_slow_task(worker_factory, broker, queue_name, record)

    first.kill_group()  # as a task that kills its own process would
    # What the visibility timeout would do later: any row still there becomes visible now.
    rows(broker, queue_name).update(visible_at=timezone.now())
    worker_factory("-P", "solo")

    after = tasks.clock_in.delay(str(record), "after", 0)
    assert after.get(timeout=60) == "after"  # the queue was read since the restart
    assert starts(record) == 1, "the killing task came back"
    assert not rows(broker, queue_name).exists()


def test_a_warm_shutdown_leaves_no_acked_row(
        worker_factory, app_settings, broker, queue_name, tmp_path):
    record = tmp_path / "starts.txt"
    first, result = start_slow_task(worker_factory, broker, queue_name, record)

    assert first.stop(timeout=60) == 0  # SIGTERM: the task finishes, then the worker exits

    assert result.get(timeout=10) == "slow"
    assert not rows(broker, queue_name).exists()
    assert starts(record) == 1
