"""The worker's answers to control commands, called as the mailbox calls them (no broker)."""

from __future__ import annotations

import signal

import kombu
import pytest

from djtasks import App, conf
from djtasks.worker.consumer import Consumer
from djtasks.worker.control import WorkerControl, signal_number
from djtasks.worker.pools import POOLS
from djtasks.worker.request import Executor
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
