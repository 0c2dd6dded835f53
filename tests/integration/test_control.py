"""Remote control over every broker: every inspect and control command, and the command line.

Other test runs may share the RabbitMQ and Redis brokers (and so the mailbox exchange),
so each assertion looks at the answers of this module's two workers only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.test import override_settings

import djtasks
from djtasks import states
from djtasks.exceptions import TaskRevokedError
from tests.integration.conftest import (
    DATABASES,
    WorkerProcess,
    holds_ahead,
    queue_size,
    rebind_mailboxes,
    run_command,
    start_worker,
    wait_until,
)
from tests.testapp import tasks

#: A mailbox of this module's own: a worker of another run on the shared broker never
#: answers in place of this module's workers.
MAILBOX = {"DJTASKS_CONTROL_EXCHANGE": "djtasks-control-tests"}

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
                            "-Q", f"{queue_name},{queue_name}-first", env=MAILBOX),
               start_worker(broker, queue_name, "-c", "2", "-n", names[1], env=MAILBOX)]
    yield started
    for process in started:
        process.stop()


@pytest.fixture(autouse=True)
def _own_mailbox(app_settings):
    with override_settings(DJTASKS={**app_settings, "control_exchange": MAILBOX[
            "DJTASKS_CONTROL_EXCHANGE"]}):
        yield


@pytest.fixture(autouse=True)
def _mailboxes_bound(broker, names, workers, _own_mailbox):
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
    pinged = run_command(broker, queue_name, "djtasks", "control", "ping", "--timeout", "2", env=MAILBOX)
    assert pinged.returncode == 0, pinged.stderr
    lines = pinged.stdout.splitlines()
    for name in names:
        assert lines[lines.index(f"-> {name}: OK") + 1] == "    pong"

    listed = run_command(broker, queue_name, "djtasks", "inspect", "registered",
                         "-d", ",".join(names), "--timeout", "5", env=MAILBOX)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line for line in lines if not line.startswith("  ")] == [f"-> {name}: OK" for name in names]
    assert lines.count("    * tests.testapp.tasks.add") == 2
    assert lines.count("    * tests.testapp.tasks.clock_in_limited [rate_limit=2/s]") == 2


def test_nobody_answering_is_an_error(workers, broker, queue_name):
    alone = run_command(broker, queue_name, "djtasks", "inspect", "ping",
                        "-d", "nobody@nowhere", "--timeout", "0.5", env=MAILBOX)
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


def inspect(names, *which: int, timeout: float = 10):
    return djtasks.app.control.inspect(destination=[names[i] for i in which], timeout=timeout)


def control(names, *which: int):
    return {"destination": [names[i] for i in which], "reply": True, "timeout": 10}


REQUEST_FIELDS = {"id", "name", "args", "kwargs", "type", "hostname", "time_start",
                  "acknowledged", "delivery_info", "worker_pid"}


def test_inspect_answers_in_celerys_shapes(workers, names, broker, app_settings, queue_name,
                                          tmp_path):
    first = f"{queue_name}-first"
    starts = tmp_path / "starts.txt"
    running = tasks.clock_in.apply_async((str(starts), "busy", 3), queue=first)
    later = tasks.add.apply_async((1, 1), queue=first, countdown=120)
    wait_until(lambda: starts.exists() and starts.read_text(), message="the task started")
    ask = inspect(names, 0)

    stats = ask.stats()[names[0]]
    assert {"total", "pid", "clock", "uptime", "pool", "broker", "prefetch_count", "rusage"} <= set(stats)
    pool = stats["pool"]
    assert pool["max-concurrency"] == 2
    assert len(pool["processes"]) == 2
    assert pool["implementation"].endswith((":PreforkPool", ":Fleet"))  # fed, or consuming children
    assert pool["max-tasks-per-child"] == "N/A"
    assert stats["prefetch_count"] == 8
    assert "password" not in stats["broker"]
    assert stats["broker"]["transport"]
    assert stats["rusage"]["maxrss"] > 0
    assert stats["total"].get("tests.testapp.tasks.clock_in", 0) >= 1

    [active] = [one for one in ask.active()[names[0]] if one["id"] == running.id]
    assert set(active) == REQUEST_FIELDS
    assert (active["name"], active["args"], active["hostname"]) == (
        "tests.testapp.tasks.clock_in", [str(starts), "busy", 3], names[0])
    assert active["acknowledged"] is True
    assert active["worker_pid"] in pool["processes"]
    assert abs(active["time_start"] - float(starts.read_text().split()[1])) < 5
    assert active["delivery_info"]["routing_key"] == first

    if broker.is_django:
        # django:// keeps a message invisible in its queue until due: no worker parks or holds it.
        assert later.id not in [one["request"]["id"] for one in ask.scheduled()[names[0]]]
        scheduled = []
    else:
        scheduled = wait_until(lambda: [one for one in ask.scheduled()[names[0]]
                                        if one["request"]["id"] == later.id], message="parked")
        due_in = datetime.fromisoformat(scheduled[0]["eta"]) - datetime.now(UTC)
        assert timedelta(seconds=100) < due_in <= timedelta(seconds=120)
        assert scheduled[0]["priority"] == 0
        assert scheduled[0]["parked"] is True
        assert set(scheduled[0]["request"]) == REQUEST_FIELDS
        assert [one for one in inspect(names, 1).scheduled()[names[1]]
                if one["request"]["id"] == later.id] == []  # it does not consume that queue

    queried = ask.query_task(running.id, later.id, "unknown-id")[names[0]]
    assert queried[running.id][0] == "active"
    assert queried[running.id][1]["id"] == running.id
    if scheduled:
        assert queried[later.id] == ["scheduled", scheduled[0]["request"]]
    assert set(queried) == {running.id} | ({later.id} if scheduled else set())

    djtasks.app.control.revoke(later.id, terminate=True, **control(names, 0))
    assert later.id in ask.revoked()[names[0]]

    conf = ask.conf()[names[0]]
    assert conf["task_default_queue"] == queue_name
    assert "guest:guest" not in str(conf)
    report = ask.report()[names[0]]
    assert "kombu:" in report["ok"]
    assert "djtasks:" in report["ok"]
    assert running.get(timeout=30) == "busy"


def test_time_limit_applies_to_the_next_runs(workers, names, app_settings, queue_name):
    replies = djtasks.app.control.time_limit("tests.testapp.tasks.outlast", soft=0.5, hard=30,
                                            **control(names, 0))
    assert replies == [{names[0]: {"ok": "time limits set successfully"}}]
    assert tasks.outlast.apply_async((20,), queue=f"{queue_name}-first").get(timeout=30) == "cleaned up"
    unknown = djtasks.app.control.time_limit("no.such.task", soft=1, **control(names, 0))
    assert unknown == [{names[0]: {"error": "unknown task"}}]


def test_add_consumer_takes_a_queue_and_cancel_consumer_lets_it_go(workers, names, broker,
                                                                   app_settings, queue_name):
    extra = f"{queue_name}-extra"
    assert djtasks.app.control.add_consumer(extra, **control(names, 1)) == [
        {names[1]: {"ok": f"add consumer {extra}"}}]
    consumed = inspect(names, 1).active_queues()[names[1]]
    assert extra in [queue["name"] for queue in consumed]
    assert tasks.whoami.apply_async(queue=extra).get(timeout=30)["hostname"] == names[1]

    assert djtasks.app.control.cancel_consumer(extra, **control(names, 1)) == [
        {names[1]: {"ok": f"no longer consuming from {extra}"}}]
    assert extra not in [queue["name"] for queue in inspect(names, 1).active_queues()[names[1]]]
    waiting = tasks.whoami.apply_async(queue=extra)
    # Nobody consumes it now: it waits in its queue (a round trip to worker 1 first).
    assert djtasks.app.control.ping(destination=[names[1]], timeout=5)
    wait_until(lambda: queue_size(broker, extra) == 1, message="the message waits in its queue")
    assert waiting.state == states.PENDING
    # Another worker taking the queue runs it: it was waiting, not lost.
    djtasks.app.control.add_consumer(extra, **control(names, 0))
    assert waiting.get(timeout=30)["hostname"] == names[0]
    djtasks.app.control.cancel_consumer(extra, **control(names, 0))


def test_pool_grow_and_shrink_change_the_pool_processes(workers, names, app_settings, queue_name):
    ask = inspect(names, 1)

    def processes() -> list[int]:
        return ask.stats()[names[1]]["pool"]["processes"]

    before = processes()
    assert len(before) == 2
    assert djtasks.app.control.pool_grow(2, **control(names, 1)) == [{names[1]: {"ok": "pool will grow"}}]
    grown = wait_until(lambda: len(found := processes()) == 4 and found, message="4 processes")
    assert set(before) < set(grown)
    assert ask.stats()[names[1]]["prefetch_count"] == 16  # the window follows the pool
    assert djtasks.app.control.pool_shrink(3, **control(names, 1)) == [
        {names[1]: {"ok": "pool will shrink"}}]
    wait_until(lambda: len(processes()) == 1, message="1 process")
    too_far = djtasks.app.control.pool_shrink(1, **control(names, 1))
    assert "one process stays" in too_far[0][names[1]]["error"]
    djtasks.app.control.pool_grow(1, **control(names, 1))
    wait_until(lambda: len(processes()) == 2, message="2 processes again")
    assert tasks.add.apply_async((2, 2), queue=queue_name).get(timeout=30) == 4
    refused = djtasks.app.control.broadcast("pool_restart", **control(names, 1))
    assert refused == [{names[1]: {"error": "pool restarts are not enabled (worker_pool_restarts)"}}]


def test_shutdown_is_warm_and_purge_empties_the_named_queues_only(broker, names, worker_factory,
                                                                  app_settings, queue_name,
                                                                  tmp_path):
    own, other, kept = (f"{queue_name}-{suffix}" for suffix in ("own", "other", "kept"))
    name = f"shut-{uuid.uuid4().hex[:6]}@localhost"
    stopping = worker_factory("-c", "1", "-n", name, "-Q", own,
                              env={**MAILBOX, "DJTASKS_WORKER_POOL_RESTARTS": "true"})
    ask = djtasks.app.control.inspect(destination=[name], timeout=10)
    # pool_restart, allowed here: a module that holds no task is never imported.
    refused = djtasks.app.control.broadcast("pool_restart", {"modules": ["this"], "reload": True},
                                            destination=[name], reply=True, timeout=10)
    assert refused == [{name: {"error": "expected modules of registered tasks, got this"}}]
    before = ask.stats()[name]["pool"]["processes"]
    restarted = djtasks.app.control.broadcast(
        "pool_restart", {"modules": ["tests.testapp.tasks"], "reload": True},
        destination=[name], reply=True, timeout=10)
    assert restarted == [{name: {"ok": "reload started"}}]
    wait_until(lambda: set(ask.stats()[name]["pool"]["processes"]).isdisjoint(before),
               message="new pool processes")

    starts = tmp_path / "starts.txt"
    # Long enough that the shutdown command, a process of its own, arrives while it runs.
    in_flight = tasks.clock_in.apply_async((str(starts), "first", 8), queue=own)
    queued = [tasks.add.apply_async((n, n), queue=own) for n in range(2)]
    wait_until(lambda: starts.exists() and starts.read_text(), message="the first task started")
    if holds_ahead(broker, ask.stats()[name]):
        reserved = wait_until(lambda: ask.reserved().get(name), message="a reserved task")
        assert {one["id"] for one in reserved} <= {one.id for one in queued}
        assert all(set(one) == REQUEST_FIELDS for one in reserved)
        assert all(one["acknowledged"] is False for one in reserved)
    else:
        reserved = []

    shut = run_command(broker, queue_name, "djtasks", "control", "shutdown", "-d", name,
                       "--timeout", "10", env=MAILBOX)
    assert shut.returncode == 0, shut.stderr
    assert shut.stdout.splitlines()[:2] == [f"-> {name}: OK", "    shutting down"]
    assert stopping.process.wait(timeout=30) == 0
    assert in_flight.get(timeout=15) == "first"  # it ran to its end
    # Nothing lost: each queued task ran, or waits in its queue again (the reserved ones do).
    waiting = [one for one in queued if one.state == states.PENDING]
    assert {one["id"] for one in reserved} <= {one.id for one in waiting}
    assert all(one.state == states.SUCCESS for one in queued if one not in waiting)
    assert queue_size(broker, own) == len(waiting)

    tasks.add.apply_async((1, 2), queue=other)
    tasks.add.apply_async((1, 2), queue=kept)
    purged = run_command(broker, queue_name, "djtasks", "purge", "-Q", f"{own},{other}", "-f", env=MAILBOX)
    assert purged.returncode == 0, purged.stderr
    count = len(waiting)
    assert purged.stdout.splitlines() == [
        f"Deleted {count} {'message' if count == 1 else 'messages'} from {own}.",
        f"Deleted 1 message from {other}.", f"Purged {count + 1} messages from 2 queues."]
    assert (queue_size(broker, own), queue_size(broker, other), queue_size(broker, kept)) == (0, 0, 1)


def test_the_command_line_status_call_result_and_json(workers, names, broker, queue_name,
                                                     app_settings):
    status = run_command(broker, queue_name, "djtasks", "status", "-d", ",".join(names),
                         "--timeout", "5", env=MAILBOX)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [f"-> {names[0]}: OK", f"-> {names[1]}: OK", "",
                                          "2 nodes online."]
    nobody = run_command(broker, queue_name, "djtasks", "status", "-d", "nobody@nowhere",
                         "--timeout", "0.5", env=MAILBOX)
    assert nobody.returncode == 1
    assert "no worker answered within 0.5 s" in nobody.stderr

    called = run_command(broker, queue_name, "djtasks", "call", "tests.testapp.tasks.add",
                         "--args", "[20, 22]", "--queue", queue_name, env=MAILBOX)
    assert called.returncode == 0, called.stderr
    task_id = called.stdout.strip()
    assert djtasks.app.AsyncResult(task_id).get(timeout=30) == 42
    shown = run_command(broker, queue_name, "djtasks", "result", task_id, env=MAILBOX)
    assert (shown.returncode, shown.stdout.strip()) == (0, "42")

    stats = run_command(broker, queue_name, "djtasks", "inspect", "stats", "--json",
                        "-d", names[0], "--timeout", "5", env=MAILBOX)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)[names[0]]["pool"]["max-concurrency"] == 2


def test_a_second_worker_of_the_same_name_still_runs_tasks(workers, names, worker_factory, broker,
                                                           app_settings, queue_name):
    # Last in the module: when it stops, it deletes the mailbox queue it shares (not on AMQP).
    twin = worker_factory("-c", "1", "-n", names[0], "-Q", f"{queue_name}-twin", env=MAILBOX)
    if broker.name == "amqp":  # the first one holds the exclusive mailbox queue
        twin.wait_for_line(rf"cannot listen on the mailbox of {names[0]} .*RESOURCE_LOCKED")
    assert tasks.add.apply_async((1, 2), queue=f"{queue_name}-twin").get(timeout=30) == 3
