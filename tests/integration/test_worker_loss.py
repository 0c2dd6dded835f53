"""A prefork child that dies, or is replaced on purpose, on real workers over every broker."""

from __future__ import annotations

import os
import signal

import pytest

import djtasks
from djtasks import states
from djtasks.exceptions import WorkerLostError
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


def kill_first_run(record) -> int:
    """Wait for the task to note its child's pid in ``record``; SIGKILL that child."""
    pids = wait_until(lambda: record.exists() and record.read_text().split(),
                      message="the task started")
    os.kill(int(pids[0]), signal.SIGKILL)
    return int(pids[0])


def test_kill_9_under_reject_on_worker_lost_runs_the_task_again(worker, app_settings, tmp_path):
    record = tmp_path / "requeued.txt"
    result = tasks.die_requeued.delay(str(record))
    killed = kill_first_run(record)
    assert result.get(timeout=60) == 2  # the second run returns how many runs there were
    first, second = record.read_text().split()
    assert int(first) == killed
    assert int(second) != killed
    worker.wait_for_line(rf"die_requeued\[{result.id}\]: .*requeued, it will run again")
    assert not [line for line in worker.lines if result.id in line and "raised unexpected" in line]


def test_kill_9_without_reject_on_worker_lost_fails_the_task(worker, app_settings, tmp_path):
    record = tmp_path / "failed.txt"
    result = tasks.die_failed.delay(str(record))
    kill_first_run(record)
    with pytest.raises(WorkerLostError, match="signal 9"):
        result.get(timeout=60)
    assert djtasks.app.AsyncResult(result.id).state == states.FAILURE
    # Acknowledged, not requeued: the worker goes on and the task does not run again.
    assert tasks.add.delay(1, 1).get(timeout=30) == 2
    assert len(record.read_text().split()) == 1


def test_max_tasks_per_child_replaces_the_child(worker_factory, app_settings, queue_name):
    # A queue of its own: the module's worker consumes the default one.
    queue = f"{queue_name}-tasks"
    recycling = worker_factory("-c", "1", "-Q", queue, "-n", f"{queue}@%h",
                               "--max-tasks-per-child", "2")
    pids = [tasks.pid.apply_async(queue=queue).get(timeout=30) for _ in range(4)]
    assert pids[0] == pids[1] != pids[2] == pids[3]
    recycling.wait_for_line(r"Replacing pool process \d+: it ran 2 tasks \(max_tasks_per_child\)")


def test_max_memory_per_child_setting_replaces_the_child(worker_factory, app_settings, queue_name):
    # 1 KiB: every child is over it after its first task, so each task gets a new process.
    queue = f"{queue_name}-memory"
    worker_factory("-c", "1", "-Q", queue, "-n", f"{queue}@%h",  # a node name of its own too
                   env={"DJTASKS_WORKER_MAX_MEMORY_PER_CHILD": "1"})
    pids = [tasks.pid.apply_async(queue=queue).get(timeout=30) for _ in range(3)]
    assert len(set(pids)) == 3
