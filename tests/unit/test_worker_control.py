"""The worker's answers to control commands, called as the mailbox calls them (no broker)."""

from __future__ import annotations

import signal

import kombu
import pytest

from djtasks import App, conf
from djtasks.worker.autoscale import Autoscaler, parse_autoscale
from djtasks.worker.consumer import Consumer
from djtasks.worker.control import WorkerControl, signal_number
from djtasks.worker.executor import Executor
from djtasks.worker.pools import POOLS
from tests.testapp import tasks


@pytest.fixture
def control():
    app = App(conf.load({"broker_url": "memory://"}, {}))
    pool = POOLS["threads"](1, Executor(app))
    yield WorkerControl(Consumer(app, pool, ["unit"], "w1@host", 1), "w1@host")
    app.close()


def test_ping(control):
    assert control.ping() == {"ok": "pong"}


def test_registered_lists_the_users_tasks(control):
    names = control.registered()
    assert tasks.add.name in names
    assert names == sorted(names)
    assert not [name for name in names if name.startswith("djtasks.")]


def test_active_queues_describes_the_consumed_queues(control):
    assert control.active_queues() == [
        {"name": "unit", "routing_key": "unit", "exchange": {"name": "unit", "type": "direct"}}]


def test_rate_limit_sets_disables_and_refuses(control):
    assert control.rate_limit(tasks.add.name, "10/m") == {"ok": "new rate limit set successfully"}
    assert control.consumer.rate_limits.rate_of(tasks.add.name) == pytest.approx(10 / 60)
    assert control.rate_limit(tasks.add.name, "0") == {"ok": "rate limit disabled successfully"}
    assert control.consumer.rate_limits.rate_of(tasks.add.name) is None
    assert control.rate_limit("no.such.task", "1/s") == {"error": "unknown task 'no.such.task'"}
    assert control.rate_limit(tasks.add.name, "1/week") == {
        "error": "invalid rate limit: rate_limit: expected the unit s, m or h, got '1/week'"}


@pytest.mark.django_db
def test_revoke_is_known_at_once_and_a_threads_pool_cannot_terminate(control):
    assert control.revoke("t-1") == {"ok": "tasks t-1 flagged as revoked"}
    assert control.revoke(["t-2", "t-3"], terminate=True, signal="SIGKILL") == {
        "error": "the threads pool cannot terminate a running task"}
    revocations = control.consumer.revocations
    revocations.enabled = False  # answer from what the commands said, not from the store
    assert all(task_id in revocations for task_id in ("t-1", "t-2", "t-3"))


@pytest.mark.parametrize(("value", "number"), [
    ("SIGKILL", signal.SIGKILL), ("KILL", signal.SIGKILL), ("term", signal.SIGTERM), (9, 9), ("15", 15),
])
def test_signal_number(value, number):
    assert signal_number(value) == number


def test_signal_number_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="got 'SIGNOPE'"):
        signal_number("SIGNOPE")


@pytest.mark.parametrize(("body", "headers"), [
    ({"method": "ping"}, {"expires": "soon"}),  # not a timestamp
    ({"method": "ping", "reply_to": "not a mapping"}, {}),
    ({"method": ["ping"]}, {}),
])
def test_a_malformed_command_is_logged_not_raised(control, caplog, body, headers):
    message = kombu.Message(body=b"", headers=headers)
    control.on_message(body, message)  # the mailbox runs in the main loop: it must go on
    assert "control:" in caplog.text


@pytest.fixture
def running_control(control):
    control.consumer.pool.start()
    yield control
    control.consumer.pool.stop()


def test_pool_grow_and_shrink_change_the_threads_and_the_window(running_control):
    control = running_control
    pool = control.consumer.pool
    assert control.pool_grow(n="2") == {"ok": "pool will grow"}
    assert (pool.limit, pool.free_slots(), control.consumer.prefetch_count) == (3, 3, 3)
    assert control.pool_shrink(n=2) == {"ok": "pool will shrink"}
    assert (pool.limit, pool.free_slots()) == (1, 1)
    with pytest.raises(ValueError, match="one thread stays"):
        control.pool_shrink(n=1)


def test_a_solo_pool_cannot_grow():
    app = App(conf.load({"broker_url": "memory://"}, {}))
    try:
        pool = POOLS["solo"](1, Executor(app))
        with pytest.raises(NotImplementedError, match="the solo pool cannot grow"):
            pool.grow(1)
    finally:
        app.close()


def test_autoscaler_grows_with_demand_and_shrinks_after_keepalive(running_control):
    consumer = running_control.consumer
    now = [0.0]
    scaler = Autoscaler(consumer, maximum=3, minimum=1, keepalive=30, clock=lambda: now[0])
    consumer.reserved.extend([("job", "message")] * 5)  # only counted
    scaler.tick()
    assert consumer.pool.limit == 3
    consumer.reserved.clear()
    now[0] = 29.0
    scaler.tick()
    assert consumer.pool.limit == 3  # not idle for long enough yet
    now[0] = 30.0
    scaler.tick()
    assert consumer.pool.limit == 1
    running_control.autoscaler = scaler
    assert running_control.autoscale(max=4, min=2) == {"ok": "autoscale now max=4 min=2"}
    scaler.tick()
    assert consumer.pool.limit == 2


def test_autoscale_bounds_are_checked():
    assert parse_autoscale("10,3") == (10, 3)
    assert parse_autoscale("4") == (4, 1)
    with pytest.raises(ValueError, match=r"expected 1 <= min <= max, got max=2 min=3"):
        parse_autoscale("2,3")
    with pytest.raises(ValueError, match="expected 'max,min'"):
        parse_autoscale("ten")


def test_autoscale_without_an_autoscaler_is_an_error(control):
    assert "autoscale is not enabled" in control.autoscale(max=2, min=1)["error"]


def test_time_limit_sets_the_tasks_limits_and_refuses_unknown_tasks(control):
    task = control.consumer.app.tasks[tasks.outlast.name]
    try:
        assert control.time_limit(tasks.outlast.name, soft="1.5", hard=10) == {
            "ok": "time limits set successfully"}
        assert (task.soft_time_limit, task.time_limit) == (1.5, 10.0)
    finally:
        del task.soft_time_limit, task.time_limit
    assert control.time_limit("no.such.task", soft=1) == {"error": "unknown task"}


def test_pool_restart_needs_the_setting(control):
    assert control.pool_restart() == {"error": "pool restarts are not enabled (worker_pool_restarts)"}


def test_registered_shows_the_asked_attributes(control):
    listed = control.registered(taskinfoitems=["rate_limit"])
    assert f"{tasks.clock_in_limited.name} [rate_limit=2/s]" in listed
    assert tasks.add.name in listed


def test_a_command_for_other_workers_gets_no_answer_even_when_unknown(control):
    # No node bound: answering at all would fail here.
    control.handle({"method": "no_such_command", "destination": ["other@host"],
                    "reply_to": {"exchange": "reply", "routing_key": "r"}}, None)
