"""Time limits on real workers: soft raised inside the task, hard kills and replaces (prefork)."""

from __future__ import annotations

import pytest

import djtasks
from djtasks import states
from djtasks.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from tests.integration.conftest import DATABASES, start_worker, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


@pytest.fixture(scope="module")
def worker(broker, queue_name, django_db_setup):
    """The module's prefork worker (-c 2), under a node name no other test run uses.

    Node names must be unique per broker: the control mailbox is one exclusive queue each.
    The parent feeds its children here: test_fleet.py has the same behaviours with
    children that consume (the default).
    """
    process = start_worker(broker, queue_name, "-c", "2", "-n", f"{queue_name}@%h",
                           "--no-consume-in-children")
    yield process
    process.stop()


def test_hard_limit_kills_the_task_while_another_completes(worker, app_settings):
    killed = tasks.nap.apply_async((60,), time_limit=1)
    neighbour = tasks.nap.delay(2)
    with pytest.raises(TimeLimitExceeded, match=r"hard time limit \(1s\) exceeded"):
        killed.get(timeout=30)
    assert neighbour.get(timeout=30) == 2
    assert djtasks.app.AsyncResult(killed.id).state == states.FAILURE
    worker.wait_for_line(r"Hard time limit \(1s\) exceeded for .*nap\[" + killed.id)
    # The killed process was replaced: the worker still runs two tasks at once.
    pair = [tasks.nap.delay(1), tasks.nap.delay(1)]
    assert [r.get(timeout=30) for r in pair] == [1, 1]


def test_a_task_killed_by_its_hard_limit_calls_its_errback(worker, app_settings, tmp_path):
    record = tmp_path / "errback.txt"
    killed = tasks.nap.apply_async((60,), time_limit=1,
                                   link_error=tasks.log_failed_id.s(path=str(record)))
    with pytest.raises(TimeLimitExceeded):
        killed.get(timeout=30)
    assert wait_until(lambda: record.exists() and record.read_text().split(),
                      message="the errback ran") == [killed.id]


def test_soft_limit_of_the_task_is_caught_and_the_task_cleans_up(worker, app_settings):
    result = tasks.outlast_soft.delay(60)
    assert result.get(timeout=30) == "cleaned up"
    worker.wait_for_line(r"Soft time limit \(1s\) exceeded for .*outlast_soft\[" + result.id)


def test_soft_limit_per_call_interrupts_a_blocking_call(worker, app_settings):
    # time.sleep(60) is one C call: the signal interrupts it in the prefork child.
    with pytest.raises(SoftTimeLimitExceeded):
        tasks.nap.apply_async((60,), soft_time_limit=1).get(timeout=30)


def test_a_task_within_its_limits_is_untouched(worker, app_settings):
    assert tasks.outlast.apply_async((0.2,), soft_time_limit=20, time_limit=30).get(timeout=30) \
        == "slept"


def test_threads_pool_raises_the_soft_limit_and_warns_of_hard_ones(worker_factory, app_settings,
                                                                  queue_name):
    queue = f"{queue_name}-threads"  # of its own: the module's worker consumes the default one
    threads = worker_factory("-P", "threads", "-c", "2", "-Q", queue, "-n", f"{queue}@%h",
                             env={"DJTASKS_TASK_SOFT_TIME_LIMIT": "1", "DJTASKS_TASK_TIME_LIMIT": "40"})
    threads.wait_for_line(r"WARNING.*the threads pool cannot enforce hard time limits "
                          r"\(task_time_limit=40, .*hard_limited\.time_limit=30")
    # The worker's default soft limit, raised inside the thread; a second thread goes on.
    interrupted = tasks.outlast.apply_async((60,), queue=queue)
    neighbour = tasks.add.apply_async((2, 3), queue=queue)
    assert interrupted.get(timeout=30) == "cleaned up"
    assert neighbour.get(timeout=30) == 5
    threads.wait_for_line(r"Soft time limit \(1s\) exceeded for .*outlast\[" + interrupted.id)
