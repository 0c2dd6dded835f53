"""djtasks.testing.InProcessWorker: real consumer and executor on memory://, in-process."""

from __future__ import annotations

import pytest
from django.test import override_settings

from djtasks.exceptions import TimeoutError as JoinTimeoutError
from djtasks.testing import InProcessWorker
from tests.testapp import tasks
from tests.testapp.tasks import CustomError

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def memory_broker():
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "testing"}):
        yield


def test_join_runs_what_was_queued():
    results = [tasks.add.delay(i, i) for i in range(5)]
    with InProcessWorker() as worker:
        worker.join()
    assert [r.get(timeout=1) for r in results] == [0, 2, 4, 6, 8]


def test_join_reraises_the_tasks_own_exception():
    tasks.fail.delay("from join")
    with InProcessWorker() as worker, pytest.raises(CustomError, match="from join"):
        worker.join()


def test_join_without_propagate_leaves_the_failure_in_the_result():
    result = tasks.fail.delay("kept")
    with InProcessWorker() as worker:
        worker.join(propagate=False)
    with pytest.raises(CustomError, match="kept"):
        result.get(timeout=1)


def test_join_on_empty_queues_returns_at_once():
    with InProcessWorker() as worker:
        worker.join(timeout=1)


def test_join_times_out_on_a_queue_it_cannot_empty():
    tasks.record.delay("/dev/null", "slow", 0.3)
    tasks.record.delay("/dev/null", "slow", 0.3)
    with InProcessWorker() as worker, pytest.raises(JoinTimeoutError, match="not empty"):
        worker.join(timeout=0.1)
