"""Publishing that follows the caller's transaction: delay_on_commit and task_outbox.

Committed, the task runs and no outbox row is left; rolled back, there is no task; a
publisher that dies between its commit and its publish leaves a row that a worker sends.
Over every broker: on ``django://`` the message row is in the transaction itself.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.db import router, transaction
from django.test import override_settings

import djtasks
from djtasks import states
from djtasks.models import OutboxMessage
from tests.integration.conftest import (
    DATABASES,
    ROOT,
    command_environment,
    djtasks_settings,
    only_brokers,
)
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


def in_rolled_back_transaction(alias: str, send):
    """Call ``send`` inside a transaction on ``alias`` that is then rolled back; return its value."""
    with transaction.atomic(using=alias):
        value = send()
        transaction.set_rollback(True, using=alias)
    return value


@pytest.fixture
def alias(broker) -> str:
    """The database whose transaction the task follows: the broker's on django://."""
    return broker.database if broker.is_django else router.db_for_write(OutboxMessage)


def outbox_rows() -> int:
    return OutboxMessage.objects.using(router.db_for_write(OutboxMessage)).count()


def test_a_task_sent_on_commit_runs_once_committed_and_leaves_no_row(worker, app_settings, broker,
                                                                    alias):
    with transaction.atomic(using=alias):
        result = tasks.add.delay_on_commit(2, 3)
        assert result.id  # known at once, unlike Celery's None
        assert outbox_rows() == (0 if broker.is_django else 1)  # in the transaction
    assert result.get(timeout=20) == 5
    assert outbox_rows() == 0


def test_a_rolled_back_transaction_sends_no_task(worker, app_settings, broker, alias):
    rolled_back = in_rolled_back_transaction(
        alias, lambda: tasks.add.apply_async_on_commit((1, 1), countdown=0))
    assert outbox_rows() == 0
    assert tasks.add.delay(2, 2).get(timeout=20) == 4  # sent after it, run: the queue was served
    worker.wait_for_line(rf"\[{tasks.add.delay(3, 3).id}\] succeeded")
    assert djtasks.app.AsyncResult(rolled_back.id).state == states.PENDING
    assert not [line for line in worker.lines if rolled_back.id in line]


def test_outside_a_transaction_it_is_sent_at_once(worker, app_settings):
    assert tasks.add.delay_on_commit(4, 5).get(timeout=20) == 9
    assert outbox_rows() == 0


def test_task_outbox_makes_every_publish_in_a_transaction_follow_it(worker, broker, queue_name,
                                                                    alias):
    with override_settings(DJTASKS=djtasks_settings(broker, queue_name, task_outbox=True)):
        rolled_back = in_rolled_back_transaction(alias, lambda: tasks.add.delay(1, 2))
        with transaction.atomic(using=alias):
            committed = tasks.add.delay(3, 4)
            assert outbox_rows() == (0 if broker.is_django else 1)
        assert committed.get(timeout=20) == 7
        worker.wait_for_line(rf"\[{tasks.add.delay(5, 5).id}\] succeeded")
    assert djtasks.app.AsyncResult(rolled_back.id).state == states.PENDING
    assert outbox_rows() == 0


# A process that commits and dies before its publish: an on_commit hook registered first
# runs first, and ends the process before the outbox's own hook could send the message.
DIES_AFTER_COMMIT = """
import os
from django.db import transaction
from tests.testapp import tasks
with transaction.atomic():
    transaction.on_commit(lambda: (print("committed", flush=True), os._exit(0)))
    print("sent", tasks.add.delay_on_commit(20, 22).id, flush=True)
"""


@only_brokers("amqp", "redis")  # django:// has no outbox: its message is committed with the row
def test_a_task_whose_publisher_dies_after_the_commit_is_sent_by_a_worker(worker, app_settings,
                                                                         broker, queue_name):
    died = subprocess.run([sys.executable, "-m", "django", "shell", "-c", DIES_AFTER_COMMIT],
                          cwd=ROOT, env=command_environment(broker, queue_name), capture_output=True,
                          text=True, timeout=120, check=False)
    assert died.returncode == 0, died.stderr
    output = died.stdout
    [task_id] = [line.split()[1] for line in output.splitlines() if line.startswith("sent ")]
    assert "committed" in output
    assert outbox_rows() == 1  # committed, never sent
    assert djtasks.app.AsyncResult(task_id).get(timeout=30) == 42  # within a few seconds
    assert outbox_rows() == 0
    worker.wait_for_line(r"outbox: 1 message\(s\) sent that their publisher left behind")
