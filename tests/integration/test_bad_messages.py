"""Messages that cannot run are rejected with a clear reason; the worker keeps consuming.

No message, whatever it holds, stops the worker: each test sends one bad message, then
checks that the worker lives, that 100 good tasks after it succeed, and (where the id is
usable) that the bad one's result says what was wrong.
"""

from __future__ import annotations

import json
from datetime import timedelta

import kombu
import pytest
from django.utils import timezone
from kombu.exceptions import EncodeError

import djtasks
from djtasks import protocol, states
from djtasks.canvas import group
from djtasks.exceptions import DjtasksError, ProtocolError
from djtasks.models import DeadLetter, ParkedMessage, QueueMessage, TaskResult
from tests.integration.conftest import DATABASES, only_brokers, start_worker, wait_until
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


@pytest.fixture(scope="module")
def parent_fed(broker, queue_name, django_db_setup):
    """A prefork worker whose parent hands each task to a child: what pickling is about.

    Consuming children read their messages themselves; nothing is pickled on the way.
    """
    queue = f"{queue_name}-parent-fed"
    process = start_worker(broker, queue, "-c", "2", "--no-consume-in-children")
    yield process, queue
    process.stop()


def assert_worker_serves(worker, queue=None):
    """The worker is alive and 100 good tasks sent now (to ``queue``) succeed."""
    assert worker.process.poll() is None, worker.log()
    results = group(tasks.add.s(i, i) for i in range(100)).apply_async(queue=queue)
    assert results.get(timeout=60) == [2 * i for i in range(100)]
    assert worker.process.poll() is None, worker.log()


def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


def no_forged_lines(worker):
    """No log line was written by a message: none starts outside the log format, none has ESC."""
    return [line for line in worker.lines
            if "\x1b" in line or line.startswith(("FORGED", "[FORGED"))]


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



@pytest.mark.parametrize("depth", [600, 900])
def test_arguments_nested_too_deeply_fail_their_task_only(parent_fed, app_settings, depth):
    # Valid JSON, which the producer accepts; the prefork pool cannot pickle it for a child.
    worker, queue = parent_fed
    deep = nested(depth)
    early = tasks.add.apply_async((deep, []), queue=queue)
    late = tasks.slow_add.apply_async((deep, []), queue=queue)  # slow_add: acks_late
    for result in (early, late):
        with pytest.raises(DjtasksError, match="nested too deeply to hand to a pool process"):
            result.get(timeout=20)
        assert result.state == states.FAILURE
    worker.wait_for_line(rf"Task tests\.testapp\.tasks\.slow_add\[{late.id}\] failed: .*nested too deeply")
    assert_worker_serves(worker, queue)
    assert not [line for line in worker.lines if "[[[[[[[[[[[[[[[[[[[[" in line], "arguments logged"
    assert late.state == states.FAILURE, "the acks_late message was settled, not run again"


FAR_ETA = "9999-12-31T23:59:59-14:00"  # past year 9999 once in UTC
FAR_EXPIRES = "9999-12-31T23:59:59.500000-14:00"


def test_an_eta_past_year_9999_in_utc_is_refused(worker, app_settings, broker, queue_name):
    task_id = protocol.new_task_id()
    headers = {**wire_headers(task_id), "eta": FAR_ETA, "expires": FAR_EXPIRES}
    publish_raw(broker, queue_name, json.dumps([[1, 2], {}, {}]), content_type="application/json",
                headers=headers)
    with pytest.raises(ProtocolError, match=r"eta: expected a datetime before year 10000 in UTC, "
                                            r"got 9999-12-31T23:59:59-14:00"):
        djtasks.app.AsyncResult(task_id).get(timeout=20)
    # ETA tasks still run: parked and released on RabbitMQ and Redis, invisible until due on django://.
    assert tasks.add.apply_async((2, 3), countdown=1.5).get(timeout=20) == 5
    assert_worker_serves(worker)
    assert not ParkedMessage.objects.filter(task_id=task_id).exists()


@only_brokers("amqp", "redis")  # django:// parks nothing: a message due later waits in its queue
def test_a_parked_message_that_cannot_be_sent_back_is_dead_lettered(worker, app_settings, broker,
                                                                     queue_name):
    now, rows = timezone.now(), []
    for task_id, properties in ((protocol.new_task_id(), {"expiration": "soon"}),  # int() fails
                                (protocol.new_task_id(), {})):
        headers = {**wire_headers(task_id), "eta": now.isoformat()}
        rows.append(ParkedMessage(task_id=task_id, task_name="tests.testapp.tasks.add", eta=now,
                                  queue=queue_name, content_type="application/json",
                                  content_encoding="utf-8", body=b"[[1, 2], {}, {}]",
                                  headers=headers, properties=properties))
        now += timedelta(milliseconds=1)  # the broken one first
    ParkedMessage.objects.bulk_create(rows)
    bad, good = (djtasks.app.AsyncResult(row.task_id) for row in rows)
    assert good.get(timeout=20) == 3, "the row after the broken one was released"
    with pytest.raises(DjtasksError, match="cannot be sent back to its queue: ValueError"):
        bad.get(timeout=20)
    dead = DeadLetter.objects.get(task_id=bad.id)
    assert "expiration" in dead.message
    assert not ParkedMessage.objects.filter(task_id__in=[bad.id, good.id]).exists()
    assert tasks.add.apply_async((2, 3), countdown=1.5).get(timeout=20) == 5
    assert_worker_serves(worker)


@only_brokers("django-sqlite", "django-postgres")  # only django:// has queue rows
def test_a_queue_row_that_is_not_json_is_dead_lettered(worker, app_settings, broker, queue_name):
    QueueMessage.objects.using(broker.database).create(
        queue=queue_name, payload="{not json", visible_at=timezone.now(), created_at=timezone.now())
    assert tasks.add.delay(1, 1).get(timeout=20) == 2  # also wakes the worker up
    wait_until(lambda: DeadLetter.objects.using(broker.database)
               .filter(message="{not json", reason__contains="JSONDecodeError").exists(),
               message="the row kept as a dead letter")
    assert not QueueMessage.objects.using(broker.database).filter(payload="{not json").exists()
    worker.wait_for_line(rf"django:// queue {queue_name}: queue row \d+ is not a message: "
                         r"JSONDecodeError")
    assert_worker_serves(worker)


def test_control_characters_in_a_task_id_are_escaped_in_the_log(worker, app_settings):
    forged = "\r\nFORGED line\x1b[31m"
    ok = tasks.add.apply_async((1, 2), task_id=f"ok{forged}")
    assert ok.get(timeout=20) == 3
    unknown = djtasks.app.send_task("no.such.task", (1,), task_id=f"bad{forged}")
    with pytest.raises(Exception, match="not registered"):
        unknown.get(timeout=20)
    escaped = r"\\r\\nFORGED line\\x1b\[31m"
    worker.wait_for_line(rf"Task tests\.testapp\.tasks\.add\[ok{escaped}\] received")
    worker.wait_for_line(rf"Task tests\.testapp\.tasks\.add\[ok{escaped}\] succeeded")
    worker.wait_for_line(rf"Rejecting message bad{escaped}: task 'no.such.task' is not registered")
    assert no_forged_lines(worker) == []
    assert_worker_serves(worker)


def test_a_task_id_longer_than_the_tables_hold_is_refused(worker, app_settings, broker, queue_name):
    with pytest.raises(ProtocolError, match="id: expected at most 255 characters, got 301"):
        tasks.add.apply_async((1, 2), task_id="x" * 301)
    headers = {**wire_headers(protocol.new_task_id()), "id": "y" * 301}
    publish_raw(broker, queue_name, json.dumps([[1, 2], {}, {}]), content_type="application/json",
                headers=headers)
    worker.wait_for_line(r"Rejecting message \(no task id\): id: expected at most 255 characters, "
                         r"got 301")
    dead = wait_until(lambda: DeadLetter.objects.filter(reason__contains="got 301").first(),
                      message="the message kept as a dead letter")
    assert ("y" * 301 in dead.message, dead.task_id) == (True, "")
    assert_worker_serves(worker)


def test_a_bad_message_with_a_finished_tasks_id_leaves_its_result(worker, app_settings, broker,
                                                                 queue_name):
    done = tasks.add.delay(1, 2)
    assert done.get(timeout=20) == 3
    publish_raw(broker, queue_name, b"{not json", content_type="application/json",
                headers=wire_headers(done.id))
    worker.wait_for_line(rf"Rejecting message {done.id}")
    assert tasks.add.delay(2, 2).get(timeout=20) == 4  # received after it: the rejection is over
    fresh = djtasks.app.AsyncResult(done.id)
    assert (fresh.state, fresh.result) == (states.SUCCESS, 3)
    assert_worker_serves(worker)


def test_a_return_value_that_cannot_be_stored_is_logged_as_the_failure_stored(worker, app_settings):
    result = tasks.unserializable.delay()
    with pytest.raises(EncodeError, match="returned a value that cannot be stored as JSON"):
        result.get(timeout=20)
    worker.wait_for_line(rf"Task tests\.testapp\.tasks\.unserializable\[{result.id}\] returned in "
                         r".*, but its value could not be stored; FAILURE stored: EncodeError")
    assert not [line for line in worker.lines if result.id in line and "succeeded" in line]
    assert_worker_serves(worker)


@only_brokers("redis")  # the pools run jobs alike on every broker: one is enough
@pytest.mark.parametrize("pool", ["threads", "solo", "children"])
def test_deeply_nested_arguments_and_results_do_not_stop_the_other_pools(worker_factory, broker,
                                                                         app_settings, queue_name,
                                                                         pool):
    queue = f"{queue_name}-{pool}"  # of its own: the module's worker consumes the default one
    # Consuming children: prefork, but each child reads its own messages, so nothing is pickled.
    mode = ["-P", "prefork", "--consume-in-children"] if pool == "children" else ["-P", pool]
    other = worker_factory(*mode, "-c", "2", "-Q", queue, "-n", f"{queue}@%h",
                           env={"DJTASKS_RESULT_EXTENDED": "true"})  # the arguments are stored too
    deep = nested(900)
    results = [tasks.add.apply_async((deep, []), queue=queue),
               tasks.slow_add.apply_async((deep, []), queue=queue)]
    # No pickling on the way: they run, and the result (and, extended, the arguments) store.
    for result in results:
        assert result.get(timeout=20) == deep
        stored = TaskResult.objects.using(broker.database).get(task_id=result.id)
        assert stored.args == [deep, []]
    good = group(tasks.add.s(i, i) for i in range(100)).apply_async(queue=queue)
    assert good.get(timeout=60) == [2 * i for i in range(100)]
    assert other.process.poll() is None
