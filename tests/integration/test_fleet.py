"""Prefork children that consume from the broker themselves (``--consume-in-children``).

Real workers on every broker. The parent receives no task: its children do, run them and
acknowledge them; the parent supervises (dead children, hard time limits, terminate) and
answers remote control from its children's books.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

import djtasks
from djtasks import states
from djtasks.exceptions import TaskRevokedError, TimeLimitExceeded, WorkerLostError
from djtasks.worker.fleet.readahead import DELAY
from tests.integration.conftest import (
    DATABASES,
    queue_size,
    rebind_mailboxes,
    start_worker,
    wait_until,
)
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


@pytest.fixture(scope="module")
def name(queue_name):
    return f"{queue_name}@fleet"


@pytest.fixture(scope="module")
def worker(broker, queue_name, name, django_db_setup):
    process = start_worker(broker, queue_name, "-c", "2", "-n", name, "--consume-in-children")
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def _mailbox_bound(broker, name, worker):
    # django://: each transactional test empties the tables, the mailbox's binding with them.
    rebind_mailboxes(broker, [name])


def ask(name):
    return djtasks.app.control.inspect(destination=[name], timeout=5)


def children(name) -> tuple[int, list[int]]:
    """The parent's pid and its children's, as ``inspect stats`` tells them."""
    stats = ask(name).stats()[name]
    return stats["pid"], stats["pool"]["processes"]


def running_pid(name, task_id) -> int:
    """Wait until ``task_id`` runs; return the pid of the child running it."""
    def find():
        return [entry["worker_pid"] for entry in ask(name).active().get(name, [])
                if entry["id"] == task_id]
    return wait_until(find, message=f"{task_id} runs")[0]


def test_the_children_run_every_task_and_the_parent_none(worker, app_settings, name):
    results = [tasks.pid.delay() for _ in range(60)]
    pids = {result.get(timeout=60) for result in results}
    parent, members = children(name)
    assert pids <= set(members)
    assert parent not in pids
    assert len(members) == 2
    totals = ask(name).stats()[name]["total"]
    assert totals.get("tests.testapp.tasks.pid", 0) >= 60  # summed over the children


def test_a_task_counts_in_stats_total_while_its_child_runs_it(worker, app_settings, name):
    def naps() -> int:
        return ask(name).stats()[name]["total"].get("tests.testapp.tasks.nap", 0)
    before = naps()
    running = tasks.nap.delay(2)
    wait_until(lambda: naps() == before + 1, message="the running nap counted")
    assert not running.ready()  # counted as it started, not once it was over
    assert running.get(timeout=30) == 2


def test_inspect_active_names_the_child_running_the_task(worker, app_settings, name):
    running = tasks.nap.delay(2)
    pid = running_pid(name, running.id)
    assert pid in children(name)[1]
    assert running.id in ask(name).query_task(running.id)[name]
    assert running.get(timeout=30) == 2


def test_a_child_killed_fails_its_task_and_is_replaced(worker, app_settings, name):
    running = tasks.nap.delay(60)
    victim = running_pid(name, running.id)
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(WorkerLostError, match="signal 9"):
        running.get(timeout=30)
    assert djtasks.app.AsyncResult(running.id).state == states.FAILURE
    wait_until(lambda: len(children(name)[1]) == 2 and victim not in children(name)[1],
               message="a new child took the dead one's place")
    assert [tasks.add.delay(i, i).get(timeout=30) for i in range(4)] == [0, 2, 4, 6]


def test_the_hard_time_limit_kills_the_child_not_its_neighbour(worker, app_settings, name):
    killed = tasks.nap.apply_async((60,), time_limit=1)
    neighbour = tasks.nap.delay(2)
    with pytest.raises(TimeLimitExceeded, match=r"hard time limit \(1s\) exceeded"):
        killed.get(timeout=30)
    assert neighbour.get(timeout=30) == 2
    worker.wait_for_line(r"Hard time limit \(1s\) exceeded for .*nap\[" + killed.id)
    pair = [tasks.nap.delay(1), tasks.nap.delay(1)]
    assert [r.get(timeout=30) for r in pair] == [1, 1]


def test_revoke_terminate_stops_the_task_in_its_child(worker, app_settings, name):
    running = tasks.nap.delay(60)
    victim = running_pid(name, running.id)
    djtasks.app.control.revoke(running.id, terminate=True, signal="SIGKILL")
    with pytest.raises(TaskRevokedError):
        running.get(timeout=30)
    assert djtasks.app.AsyncResult(running.id).state == states.REVOKED
    wait_until(lambda: victim not in children(name)[1], message="the child was replaced")
    assert tasks.add.delay(2, 3).get(timeout=30) == 5


def test_what_rabbitmq_sent_a_busy_child_is_reserved_and_can_be_revoked(broker, worker, app_settings,
                                                                        name, queue_name):
    running = [tasks.nap.delay(3) for _ in range(2)]
    wait_until(lambda: len(ask(name).active().get(name, [])) == 2, message="both children busy")
    queued = [tasks.add.delay(n, n) for n in range(3)]
    if broker.name != "amqp":
        # A busy child takes nothing more where a dead child's messages would wait out the
        # visibility timeout: they wait in the queue, for any worker. (A negative: no
        # wait-until can show it, so give the children the time they would read in.)
        time.sleep(2 * DELAY)
        assert ask(name).reserved() == {name: []}
        assert queue_size(broker, queue_name) == 3
    else:
        # RabbitMQ pushed them into the children's windows: read while the naps run, listed.
        reserved = wait_until(lambda: len(ask(name).reserved().get(name, [])) == 3
                              and ask(name).reserved()[name], message="3 reserved")
        assert {one["id"] for one in reserved} == {one.id for one in queued}
        djtasks.app.control.revoke(queued[0].id)
        with pytest.raises(TaskRevokedError):
            queued[0].get(timeout=30)
    assert [r.get(timeout=30) for r in running] == [3, 3]
    ran = range(1, 3) if broker.name == "amqp" else range(3)
    assert [queued[n].get(timeout=30) for n in ran] == [2 * n for n in ran]


def test_a_warm_shutdown_loses_nothing(broker, worker_factory, app_settings, queue_name):
    queue = f"{queue_name}-warm"
    first = worker_factory("-c", "2", "-Q", queue, "-n", f"{queue}-1@fleet",
                           "--consume-in-children")
    results = [tasks.nap.apply_async((0.05,), queue=queue) for _ in range(40)]
    wait_until(lambda: sum(r.ready() for r in results) >= 3, message="the drain started")
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=60) == 0
    worker_factory("-c", "2", "-Q", queue, "-n", f"{queue}-2@fleet", "--consume-in-children")
    assert [r.get(timeout=60) for r in results] == [0.05] * 40


def kill_first_run(record) -> int:
    pids = wait_until(lambda: record.exists() and record.read_text().split(),
                      message="the task started")
    os.kill(int(pids[0]), signal.SIGKILL)
    return int(pids[0])


def test_an_acks_late_task_of_a_killed_child_fails_and_does_not_run_again(worker, app_settings,
                                                                          tmp_path):
    # RabbitMQ gives the message back at once, and the sibling receiving it settles it;
    # on Redis and django:// the parent acknowledges it by its tag (no visibility timeout).
    record = tmp_path / "failed.txt"
    result = tasks.die_failed.delay(str(record))
    kill_first_run(record)
    with pytest.raises(WorkerLostError, match="signal 9"):
        result.get(timeout=30)
    assert [tasks.add.delay(i, 1).get(timeout=30) for i in range(4)] == [1, 2, 3, 4]
    assert len(record.read_text().split()) == 1


def test_under_reject_on_worker_lost_it_runs_again_at_once(worker, app_settings, tmp_path):
    record = tmp_path / "requeued.txt"
    result = tasks.die_requeued.delay(str(record))
    killed = kill_first_run(record)
    assert result.get(timeout=30) == 2
    first, second = record.read_text().split()
    assert int(first) == killed != int(second)
