"""Remote control over every broker: ping, inspect registered, revoke(terminate=True).

Other test runs may share the RabbitMQ and Redis brokers (and so the mailbox exchange),
so each assertion looks at the answers of this module's two workers only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import djtasks
from djtasks import states
from djtasks.exceptions import TaskRevokedError
from tests.integration.conftest import (
    DATABASES,
    WorkerProcess,
    rebind_mailboxes,
    run_command,
    start_worker,
    wait_until,
)
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


@pytest.fixture(scope="module")
def names() -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"ctl1-{tag}@localhost", f"ctl2-{tag}@localhost"]


@pytest.fixture(scope="module")
def workers(broker, queue_name, names, django_db_setup) -> Iterator[list[WorkerProcess]]:
    """Two prefork workers on the module's queue; the first also consumes ``<queue>-first``."""
    started = [start_worker(broker, queue_name, "-c", "2", "-n", names[0],
                            "-Q", f"{queue_name},{queue_name}-first"),
               start_worker(broker, queue_name, "-c", "2", "-n", names[1])]
    yield started
    for process in started:
        process.stop()


@pytest.fixture(autouse=True)
def _mailboxes_bound(broker, names, workers):
    rebind_mailboxes(broker, names)


def answers(replies) -> dict:
    return {host: answer for one in replies for host, answer in one.items()}


def test_every_worker_answers_ping(workers, names, app_settings):
    replies = answers(djtasks.app.control.ping(timeout=2))
    assert {name: replies.get(name) for name in names} == {name: {"ok": "pong"} for name in names}


def test_ping_a_destination_only(workers, names, app_settings):
    replies = djtasks.app.control.ping(destination=[names[1]], timeout=5)
    assert replies == [{names[1]: {"ok": "pong"}}]


def test_inspect_registered_lists_each_workers_tasks(workers, names, app_settings):
    registered = djtasks.app.control.inspect(destination=names, timeout=5).registered()
    assert set(registered) == set(names)
    for name in names:
        assert "tests.testapp.tasks.add" in registered[name]
        assert "tests.testapp.tasks.clock_in" in registered[name]


def test_the_inspect_and_control_commands_print_every_workers_answer(workers, names, broker,
                                                                     queue_name):
    pinged = run_command(broker, queue_name, "djtasks", "control", "ping", "--timeout", "2")
    assert pinged.returncode == 0, pinged.stderr
    for name in names:
        assert f"{name}: OK pong" in pinged.stdout.splitlines()

    listed = run_command(broker, queue_name, "djtasks", "inspect", "registered",
                         "-d", ",".join(names), "--timeout", "5")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line for line in lines if not line.startswith("  ")] == [f"{name}: OK" for name in names]
    assert lines.count("  * tests.testapp.tasks.add") == 2


def test_nobody_answering_is_an_error(workers, broker, queue_name):
    alone = run_command(broker, queue_name, "djtasks", "inspect", "ping",
                        "-d", "nobody@nowhere", "--timeout", "0.5")
    assert alone.returncode == 1
    assert "no worker answered within 0.5 s" in alone.stderr


def test_revoke_terminate_stops_a_running_task_and_the_worker_goes_on(workers, names, app_settings,
                                                                      queue_name, tmp_path):
    starts = tmp_path / "starts.txt"
    running = tasks.clock_in.apply_async((str(starts), "long", 300), queue=f"{queue_name}-first")
    wait_until(lambda: starts.exists() and starts.read_text(), message="the long task started")

    replies = djtasks.app.control.revoke(running.id, terminate=True, reply=True,
                                         destination=[names[0]], timeout=10)

    assert replies == [{names[0]: {"ok": f"tasks {running.id} flagged as revoked, "
                                         f"terminated: {running.id}"}}]
    with pytest.raises(TaskRevokedError, match="terminated"):
        running.get(timeout=30)
    assert running.state == states.REVOKED
    workers[0].wait_for_line(rf"Terminating {running.id} \(SIGKILL\)")
    after = tasks.add.apply_async((2, 3), queue=f"{queue_name}-first")
    assert after.get(timeout=30) == 5


def test_revoke_terminate_of_a_task_that_is_not_running_only_revokes(workers, names, app_settings,
                                                                    queue_name, tmp_path):
    replies = djtasks.app.control.revoke("not-running-yet", terminate=True, reply=True,
                                         destination=names, timeout=5)
    assert answers(replies) == {name: {"ok": "tasks not-running-yet flagged as revoked"}
                                for name in names}
    later = tasks.clock_in.apply_async((str(tmp_path / "never.txt"), "x"), task_id="not-running-yet")
    with pytest.raises(TaskRevokedError):
        later.get(timeout=30)
    assert not Path(tmp_path / "never.txt").exists()


def test_a_second_worker_of_the_same_name_still_runs_tasks(workers, names, worker_factory, broker,
                                                           app_settings, queue_name):
    # Last in the module: when it stops, it deletes the mailbox queue it shares (not on AMQP).
    twin = worker_factory("-c", "1", "-n", names[0], "-Q", f"{queue_name}-twin")
    if broker.name == "amqp":  # the first one holds the exclusive mailbox queue
        twin.wait_for_line(rf"cannot listen on the mailbox of {names[0]} .*RESOURCE_LOCKED")
    assert tasks.add.apply_async((1, 2), queue=f"{queue_name}-twin").get(timeout=30) == 3
