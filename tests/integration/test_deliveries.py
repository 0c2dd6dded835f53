"""task_max_deliveries on real workers: a message whose execution keeps killing its process
is started at most that many times, then fails and is kept as a dead letter."""

from __future__ import annotations

import uuid

import pytest

from djtasks import states
from djtasks.exceptions import WorkerLostError
from djtasks.models import DeadLetter
from tests.integration.conftest import DATABASES
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]

ENV = {"DJTASKS_TASK_MAX_DELIVERIES": "3",
       # Redelivery of a message whose worker died, on django:// and Redis, comes this fast.
       "DJTASKS_BROKER_TRANSPORT_OPTIONS": '{"visibility_timeout": 3}'}


def test_a_task_that_keeps_killing_its_process_is_dead_lettered(worker_factory, app_settings,
                                                               tmp_path):
    starts = tmp_path / "starts.txt"
    worker = worker_factory("-c", "1", "-n", f"deliveries-{uuid.uuid4().hex[:8]}@%h", env=ENV)
    result = tasks.poison.delay(str(starts))  # acks_late and reject_on_worker_lost: requeued

    with pytest.raises(WorkerLostError, match=r"delivered 4 times .*keeps killing the worker"):
        result.get(timeout=120)

    assert starts.read_text().split() == ["start"] * 3, "started at most task_max_deliveries times"
    assert result.state == states.FAILURE
    dead = DeadLetter.objects.get(task_id=result.id)
    assert (dead.task_name, dead.deliveries) == ("tests.testapp.tasks.poison", 4)
    worker.wait_for_line(rf"Task tests\.testapp\.tasks\.poison\[{result.id}\] dead-lettered")
    assert tasks.add.delay(2, 2).get(timeout=30) == 4, "the worker goes on"
