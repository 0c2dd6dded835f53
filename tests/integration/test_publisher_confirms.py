"""On RabbitMQ, ``delay()`` returns once the broker has the message, and raises if it refuses it.

Only AMQP needs this: its ``basic.publish`` returns before the broker has decided, while
``django://`` inserts the row in the caller's own statement and Redis answers each push.
The broker is made to refuse with a policy on the machine's RabbitMQ (a queue that holds
one message and rejects the next), set and cleared by the test, for its own queue only,
in the virtual host of this test process.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import kombu
import pytest

from djtasks import App, conf
from djtasks.exceptions import OperationalError
from tests.integration.conftest import AMQP_URL, AMQP_VHOST, BROKERS, require_services

pytestmark = pytest.mark.integration


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def full_queue():
    """A queue of its own on the machine's RabbitMQ that takes one message and refuses more."""
    require_services(BROKERS[2])
    name = f"it-confirms-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("set_policy", "-p", AMQP_VHOST, "--apply-to", "queues", name, f"^{name}",
                json.dumps({"max-length": 1, "overflow": "reject-publish"}))
    yield name
    rabbitmqctl("clear_policy", "-p", AMQP_VHOST, name)


def app_publishing_to(queue: str, **transport_options) -> App:
    return App(conf.load({"broker_url": AMQP_URL, "task_default_queue": queue,
                          "broker_transport_options": transport_options}, {}))


def depth(queue: str) -> int:
    with kombu.Connection(AMQP_URL) as connection:
        return connection.default_channel.queue_declare(queue, passive=True).message_count


def delete(queue: str) -> None:
    with kombu.Connection(AMQP_URL) as connection:
        connection.default_channel.queue_delete(queue)


def test_a_refused_publish_raises_in_the_caller(full_queue):
    queue = f"{full_queue}-on"
    app = app_publishing_to(queue)
    try:
        app.send_task("tests.testapp.tasks.add", args=(1, 1))  # taken: the queue was empty
        with pytest.raises(OperationalError, match=r"refused tests\.testapp\.tasks\.add\[.*the "
                                                   r"task is not sent"):
            app.send_task("tests.testapp.tasks.add", args=(2, 2))
        assert depth(queue) == 1
    finally:
        app.close()
        delete(queue)


def test_without_confirms_the_same_refusal_is_silent(full_queue):
    # What confirms prevent: the caller is told the task was sent, and the broker dropped it.
    queue = f"{full_queue}-off"
    app = app_publishing_to(queue, confirm_publish=False)
    try:
        app.send_task("tests.testapp.tasks.add", args=(1, 1))
        app.send_task("tests.testapp.tasks.add", args=(2, 2))  # no error
        assert depth(queue) == 1
    finally:
        app.close()
        delete(queue)
