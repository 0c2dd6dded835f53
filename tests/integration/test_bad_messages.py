"""Messages that cannot run are rejected with a clear reason; the worker keeps consuming."""

from __future__ import annotations

import kombu
import pytest

import djtasks
from djtasks import protocol, states
from tests.integration.conftest import DATABASES
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


def publish_raw(broker, queue, body, *, content_type, headers):
    with kombu.Connection(broker.broker_url) as connection:
        producer = kombu.Producer(connection.default_channel)
        target = kombu.Queue(queue, kombu.Exchange(queue), routing_key=queue)
        producer.publish(body, exchange=queue, routing_key=queue, content_type=content_type,
                         content_encoding="utf-8", headers=headers, declare=[target])


def wire_headers(task_id, name="tests.testapp.tasks.add"):
    message = protocol.TaskMessage(id=task_id, task=name, args=(1, 2))
    return protocol.to_wire(message).headers


def test_unregistered_task_fails_at_once(worker, app_settings):
    result = djtasks.app.send_task("no.such.task", (1,))
    with pytest.raises(Exception, match=r"no\.such\.task") as raised:
        result.get(timeout=20)
    assert raised.type.__name__ == "NotRegistered"
    worker.wait_for_line(rf"Rejecting message {result.id}: task 'no.such.task' is not registered")
    assert tasks.add.delay(1, 1).get(timeout=20) == 2


def test_undecodable_body_is_rejected(worker, app_settings, broker, queue_name):
    task_id = protocol.new_task_id()
    publish_raw(broker, queue_name, b"{not json", content_type="application/json",
                headers=wire_headers(task_id))
    with pytest.raises(Exception, match=r"(?i)json|decode|expecting") as raised:
        djtasks.app.AsyncResult(task_id).get(timeout=20)
    assert raised.type.__name__ in ("DecodeError", "RemoteTaskError")
    assert djtasks.app.AsyncResult(task_id).state == states.FAILURE
    worker.wait_for_line(rf"Rejecting message {task_id}")
    assert tasks.add.delay(2, 2).get(timeout=20) == 4


def test_content_type_not_accepted_is_rejected(worker, app_settings, broker, queue_name):
    task_id = protocol.new_task_id()
    publish_raw(broker, queue_name, b"\x80\x04K\x01.", content_type="application/x-python-serialize",
                headers=wire_headers(task_id))
    with pytest.raises(Exception, match="not accepted") as raised:
        djtasks.app.AsyncResult(task_id).get(timeout=20)
    assert raised.type.__name__ in ("ContentDisallowed", "RemoteTaskError")
    assert tasks.add.delay(3, 3).get(timeout=20) == 6


def test_message_without_task_headers_is_rejected(worker, app_settings, broker, queue_name):
    publish_raw(broker, queue_name, b"[[], {}, {}]", content_type="application/json", headers={})
    worker.wait_for_line(r"Rejecting message \(no task id\)")
    assert tasks.add.delay(4, 4).get(timeout=20) == 8

