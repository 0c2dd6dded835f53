"""Publisher: retry policy, what reaches the broker (memory://), and unreachable brokers."""

from __future__ import annotations

import traceback

import pytest

from djtasks import App, conf, protocol
from djtasks.exceptions import DjtasksError, ImproperlyConfigured, OperationalError
from djtasks.models import ParkedMessage
from djtasks.publish import Publisher
from tests.unit.memory_broker import drain

UNREACHABLE = {
    "broker_url": "amqp://guest:sekrit@127.0.0.1:1//",
    "task_publish_retry_policy": {
        "max_retries": 1, "interval_start": 0, "interval_step": 0.01, "interval_max": 0.01,
    },
    "broker_connection_timeout": 0.5,
}


def make_app(**configured) -> App:
    return App(conf.load(configured, {}))


@pytest.fixture
def memory_app():
    drain()
    app = make_app(broker_url="memory://")
    yield app
    app.close()
    drain()


@pytest.fixture
def unreachable_app():
    app = make_app(**UNREACHABLE)
    yield app
    app.close()


# -- retry policy -----------------------------------------------------------------------------


def test_retry_policy_defaults_to_the_setting():
    publisher = Publisher(conf.load({"broker_url": "memory://"}, {}))
    try:
        assert publisher.retry_policy(None) == conf.OPTIONS["task_publish_retry_policy"].default
        assert publisher.retry_policy({}) == conf.OPTIONS["task_publish_retry_policy"].default
    finally:
        publisher.close()


def test_retry_policy_merges_the_override():
    publisher = Publisher(conf.load({"broker_url": "memory://", **{
        "task_publish_retry_policy": {"max_retries": 5, "interval_start": 1},
    }}, {}))
    try:
        assert publisher.retry_policy({"max_retries": 0}) == {"max_retries": 0, "interval_start": 1}
        # the setting itself is not changed by an override
        assert publisher.retry_policy(None) == {"max_retries": 5, "interval_start": 1}
    finally:
        publisher.close()


def test_retry_policy_rejects_unknown_keys():
    publisher = Publisher(conf.load({"broker_url": "memory://"}, {}))
    try:
        with pytest.raises(ImproperlyConfigured, match=r"unknown key\(s\) \['max_retires'\]"):
            publisher.retry_policy({"max_retires": 1})
    finally:
        publisher.close()


def test_retry_policy_setting_with_an_unknown_key_is_refused():
    # A typo in the setting must be a configuration error (at load, or at the latest when the
    # policy is read), not kombu's "Connection.ensure() got an unexpected keyword" on every
    # publish.
    def load_and_read_policy():
        app = make_app(broker_url="memory://", task_publish_retry_policy={"max_retires": 1})
        try:
            return app.publisher.retry_policy(None)
        finally:
            app.close()

    with pytest.raises(ImproperlyConfigured, match="max_retires"):
        load_and_read_policy()


def test_apply_async_retry_policy_with_an_unknown_key_publishes_nothing(memory_app):
    @memory_app.task
    def job():
        return 1

    with pytest.raises(ImproperlyConfigured, match="max_retires"):
        job.apply_async(retry_policy={"max_retires": 1})
    assert drain() == []


# -- what is published ------------------------------------------------------------------------


def test_a_published_message_is_celery_protocol_2(memory_app):
    @memory_app.task
    def job(x, y=0):
        return x + y

    result = job.apply_async((1,), {"y": 2}, headers={"tenant": "acme"})
    [message] = drain()
    assert message.headers["id"] == result.id
    assert message.headers["task"] == job.name
    assert message.headers["lang"] == "py"
    assert message.headers["root_id"] == result.id
    assert message.headers["tenant"] == "acme"
    assert message.content_type == protocol.CONTENT_TYPE_JSON
    assert message.properties["correlation_id"] == result.id
    assert message.properties["delivery_mode"] == 2
    assert message.decode() == [[1], {"y": 2}, {"callbacks": None, "errbacks": None,
                                                 "chain": None, "chord": None}]
    parsed = protocol.from_wire(message.headers, message.properties, message.decode())
    assert (parsed.id, parsed.task, tuple(parsed.args), dict(parsed.kwargs)) == (
        result.id, job.name, (1,), {"y": 2},
    )


def test_shadow_names_the_task_in_logs(memory_app):
    memory_app.send_task("tests.unit.remote", shadow="tests.unit.shown")
    [message] = drain()
    assert message.headers["shadow"] == "tests.unit.shown"


def test_send_task_leaves_ignore_result_to_the_worker(memory_app):
    # Celery's send_task sends ignore_result=None when the caller did not choose, so the
    # worker follows the task's own ignore_result option (protocol.py keeps None for this).
    memory_app.send_task("tests.unit.remote")
    [message] = drain()
    assert message.headers["ignore_result"] is None


def test_ignore_result_chosen_by_the_caller_or_the_task_is_sent(memory_app):
    @memory_app.task(ignore_result=True)
    def quiet():
        return 1

    quiet.delay()
    memory_app.send_task("tests.unit.remote", ignore_result=True)
    memory_app.send_task("tests.unit.remote", ignore_result=False)
    assert [m.headers["ignore_result"] for m in drain()] == [True, True, False]


def test_priority_reaches_the_broker(memory_app):
    message = protocol.TaskMessage(id=protocol.new_task_id(), task="tests.unit.remote", priority=5)
    route = memory_app.route(message.task, (), {}, {})
    memory_app.publisher.publish(message, route)
    [received] = drain()
    assert received.properties["priority"] == 5


def test_route_priority_reaches_the_broker(memory_app):
    app = make_app(broker_url="memory://", task_routes={"tests.unit.urgent": {"priority": 9}})
    try:
        app.send_task("tests.unit.urgent")
        [received] = drain()
        assert received.properties["priority"] == 9
    finally:
        app.close()


def test_many_publishes_share_the_pool(memory_app):
    for _ in range(25):  # more than broker_pool_limit
        memory_app.send_task("tests.unit.remote")
    assert len(drain()) == 25


def test_close_releases_and_can_be_called_twice(memory_app):
    memory_app.send_task("tests.unit.remote")
    memory_app.close()
    memory_app.close()
    assert len(drain()) == 1


# -- unreachable broker -----------------------------------------------------------------------


def test_unreachable_broker_raises_operational_error_with_a_censored_url(unreachable_app):
    with pytest.raises(OperationalError) as info:
        unreachable_app.send_task("tests.unit.remote")
    message = str(info.value)
    assert "amqp://guest:********@127.0.0.1:1//" in message
    assert "tests.unit.remote" in message
    assert "sekrit" not in message
    assert isinstance(info.value, DjtasksError)
    assert info.value.__cause__ is not None  # the driver error is chained, not lost


def test_unreachable_broker_traceback_never_shows_the_password(unreachable_app):
    with pytest.raises(OperationalError) as info:
        unreachable_app.send_task("tests.unit.remote")
    printed = "".join(traceback.format_exception(info.value))
    assert "sekrit" not in printed


def test_unreachable_broker_without_retry(unreachable_app):
    with pytest.raises(OperationalError, match=r"guest:\*{8}@127\.0\.0\.1"):
        unreachable_app.send_task("tests.unit.remote", retry=False)


def test_unreachable_broker_fails_after_the_argument_check(unreachable_app):
    @unreachable_app.task
    def job(x):
        return x

    with pytest.raises(TypeError):
        job.delay()
    with pytest.raises(OperationalError):
        job.delay(1)


def test_republish_sends_a_kept_expiration_back_unchanged(memory_app):
    """A kept message holds expiration as received (milliseconds, a string): replay sends it."""
    kept = ParkedMessage(queue="celery", exchange="", routing_key="celery",
                         content_type="application/json", content_encoding="utf-8",
                         body=b"[[], {}, {}]", headers={"id": "kept-exp"},
                         properties={"expiration": "60000", "correlation_id": "kept-exp"})
    memory_app.publisher.republish(kept)
    (message,) = drain()
    assert message.headers["id"] == "kept-exp"
    assert message.properties["expiration"] == "60000"


@pytest.mark.parametrize(("url", "options", "confirmed"), [
    ("amqp://guest@127.0.0.1:1//", {}, True),
    ("pyamqp://guest@127.0.0.1:1//", {"max_retries": 1}, True),
    ("amqp://guest@127.0.0.1:1//", {"confirm_publish": False}, False),
    ("redis://127.0.0.1:1/0", {}, None),
    ("memory://", {}, None),
])
def test_task_connections_confirm_on_rabbitmq_unless_turned_off(url, options, confirmed):
    publisher = Publisher(conf.load({"broker_url": url, "broker_transport_options": options}, {}))
    try:
        assert publisher._connection.transport_options.get("confirm_publish") is confirmed
        assert publisher._connection.transport_options == {**options, **(
            {"confirm_publish": confirmed} if confirmed is not None else {})}
        # A worker's own connection (consumer, events, replies) is not slowed by confirms.
        assert publisher.new_connection().transport_options == options
    finally:
        publisher.close()
