"""Every bad input is kept for the operator: a DeadLetter with a reason code, over every broker.

Each case sends one bad message to the module's worker (a real ``runworker``), then checks
what the operator gets: the worker lives and serves, the message is kept as a DeadLetter
with its machine-readable ``reason_code`` (replayable when it was readable enough to be
sent again), never requeued, and its result, when its id is known, says why. The module
ends with 100 good tasks through the same worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import djtasks
from djtasks import protocol, states
from djtasks.canvas import chord, group, signature
from djtasks.exceptions import MessageTooLarge
from djtasks.models import DeadLetter
from tests.integration.conftest import DATABASES, wait_until
from tests.integration.test_bad_messages import publish_raw
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]

ADD = "tests.testapp.tasks.add"
GOOD_BODY = json.dumps([[1, 2], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                     "chord": None}])


def headers_of(task_id: str, name: str = ADD, **changed) -> dict:
    headers = protocol.to_wire(protocol.TaskMessage(id=task_id, task=name, args=(1, 2))).headers
    return {**headers, **changed}


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


@dataclass(frozen=True)
class BadInput:
    """One bad message: how to send it, and what the dead letter and result must say."""

    body: bytes | str
    code: str
    says: str  # a piece of the reason, as the result and the dead letter give it
    content_type: str = "application/json"
    headers: Callable[[str], dict] = headers_of
    replayable: bool = True

    def send(self, broker, queue: str, task_id: str) -> None:
        publish_raw(broker, queue, self.body, content_type=self.content_type,
                    headers=self.headers(task_id))


BAD_INPUTS = {
    "non-utf-8 body": BadInput(b"\xff\xfe[[1, 2], {}, {}]", "decode_error", "decode"),
    "truncated json": BadInput(b"[[1, 2], {}, {", "decode_error", "Expecting"),
    "json nested 100,000 deep": BadInput(nested_json(100_000), "decode_error", "recursion"),
    "pickle": BadInput(b"\x80\x04K\x01.", "content_disallowed", "not accepted",
                       content_type="application/x-python-serialize"),
    "yaml": BadInput(b"- [1, 2]\n- {}\n- {}\n", "content_disallowed", "not accepted",
                     content_type="application/x-yaml"),
    "body not [args, kwargs, embed]": BadInput(json.dumps({"args": [1, 2]}), "invalid_envelope",
                                                "expected the body [args, kwargs, embed]"),
    "no task header": BadInput(GOOD_BODY, "invalid_envelope", "expected a 'task' header",
                               headers=lambda task_id: {"id": task_id, "lang": "py"}),
    "protocol v1": BadInput(json.dumps({"task": ADD, "id": "v1", "args": [1, 2], "kwargs": {}}),
                            "invalid_envelope", "protocol v1 messages are not supported",
                            headers=lambda task_id: {"id": task_id}),
    "unknown task": BadInput(GOOD_BODY, "not_registered", "is not registered",
                             headers=lambda task_id: headers_of(task_id, "no.such.task")),
    "eta that does not parse": BadInput(GOOD_BODY, "invalid_eta", "as an ISO 8601 datetime",
                                        headers=lambda task_id: headers_of(task_id, eta="soon")),
    "eta past year 9999": BadInput(GOOD_BODY, "invalid_eta", "before year 10000",
                                   headers=lambda task_id: headers_of(
                                       task_id, eta="9999-12-31T23:59:59-14:00")),
    "over task_max_message_size": BadInput(json.dumps([["x" * 1_100_000], {}, {}]), "too_large",
                                           "over task_max_message_size 1,048,576",
                                           replayable=False),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_a_bad_message_is_kept_as_a_dead_letter_with_its_reason_code(worker, app_settings, broker,
                                                                     queue_name, case):
    task_id = protocol.new_task_id()
    case.send(broker, queue_name, task_id)
    dead = wait_until(lambda: DeadLetter.objects.filter(task_id=task_id).first(), timeout=30,
                      message="the dead letter")
    assert (dead.reason_code, dead.deliveries) == (case.code, 1)
    assert case.says.lower() in dead.reason.lower()
    refusal = dead.replay_refusal()
    assert (refusal is None) is case.replayable, refusal
    if case.replayable:  # kept as received: the body as it came, to send again once fixed
        assert bytes(dead.body) == (case.body if isinstance(case.body, bytes) else case.body.encode())
        assert dead.content_type == case.content_type
    result = djtasks.app.AsyncResult(task_id)
    wait_until(lambda: result.state == states.FAILURE, message="the result failed")
    assert case.says.lower() in str(result.result).lower()
    worker.wait_for_line(rf"Rejecting message {task_id}: ")
    assert tasks.add.delay(2, 2).get(timeout=20) == 4  # the worker lives, and nothing is requeued
    assert DeadLetter.objects.filter(task_id=task_id).count() == 1


def test_a_message_without_an_id_is_kept_as_text(worker, app_settings, broker, queue_name):
    marker = protocol.new_task_id()
    publish_raw(broker, queue_name, GOOD_BODY, content_type="application/json",
                headers={"task": ADD, "marker": marker})
    dead = wait_until(lambda: DeadLetter.objects.filter(message__contains=marker).first(),
                      message="the dead letter")
    assert (dead.task_id, dead.reason_code, dead.body) == ("", "invalid_envelope", None)
    assert "expected a 'id' header" in dead.reason or "'id'" in dead.reason
    assert dead.replay_refusal() is not None


def test_callbacks_naming_an_unknown_task_are_dead_lettered_and_the_task_succeeds(worker,
                                                                                app_settings):
    linked = tasks.add.apply_async((1, 1), link=signature("no.such.callback"),
                                   link_error=signature("no.such.errback"))
    assert linked.get(timeout=20) == 2
    failing = tasks.fail.apply_async(("boom",), link_error=signature("no.such.errback"))
    with pytest.raises(Exception, match="boom"):
        failing.get(timeout=20)
    joined = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], signature("no.such.chord_body"))()
    for name in ("no.such.callback", "no.such.errback", "no.such.chord_body"):
        dead = wait_until(lambda name=name: DeadLetter.objects.filter(task_name=name).first(),
                          message=f"the dead letter of {name}")
        assert dead.reason_code == "not_registered"
        assert dead.replay_refusal() is None  # deploy the task, then replay it
    with pytest.raises(Exception, match="not registered"):
        joined.get(timeout=20)


def test_a_task_name_with_newlines_and_escapes_is_logged_escaped(worker, app_settings):
    forged = "evil\nFORGED line\x1b[31m"
    result = djtasks.app.send_task(forged, (1,))
    dead = wait_until(lambda: DeadLetter.objects.filter(task_id=result.id).first(),
                      message="the dead letter")
    assert (dead.task_name, dead.reason_code) == (forged, "not_registered")
    worker.wait_for_line(rf"Rejecting message {result.id}: task 'evil\\nFORGED line\\x1b\[31m' "
                         r"is not registered")
    assert not [line for line in worker.lines
                if "\x1b" in line or line.startswith(("FORGED", "[FORGED"))]


def test_an_exception_that_cannot_be_serialized_is_stored_as_its_repr(worker, app_settings):
    result = tasks.fail_unserializable.delay()
    with pytest.raises(ValueError, match="<object object at "):
        result.get(timeout=20)
    assert result.state == states.FAILURE


def test_the_producer_refuses_a_message_over_task_max_message_size(worker, app_settings):
    with pytest.raises(MessageTooLarge, match=r"tests\.testapp\.tasks\.identity\[.*\] is not "
                                              r"sent: the body is 2,000,\d+ bytes, over "
                                              r"task_max_message_size 1,048,576"):
        tasks.identity.delay("x" * 2_000_000)


def test_the_worker_serves_100_good_tasks_after_every_bad_input(worker, app_settings):
    assert worker.process.poll() is None, worker.log()
    results = group(tasks.add.s(i, i) for i in range(100)).apply_async()
    assert results.get(timeout=60) == [2 * i for i in range(100)]
    assert worker.process.poll() is None, worker.log()
