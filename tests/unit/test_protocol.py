"""Unit tests of djtasks.protocol, checked against the real celery package (test-only)."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from celery import Celery
from celery.worker.request import Request
from kombu import Connection

from djtasks import protocol
from djtasks.exceptions import ContentDisallowed, ImproperlyConfigured, ProtocolError
from djtasks.protocol import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_MSGPACK,
    CONTENT_TYPE_PICKLE,
    CONTENT_TYPE_YAML,
    MAX_ID_LENGTH,
    PROTOCOL_HEADERS,
    REPR_MAXSIZE,
    TaskMessage,
    WireMessage,
    check_content_type,
    due_time,
    from_wire,
    new_task_id,
    task_id_of,
    to_wire,
)

IST = timezone(timedelta(hours=5, minutes=30))
ETA = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=IST)
EXPIRES = datetime(2030, 1, 3, tzinfo=UTC)
CALLBACK = {"task": "log", "args": [1], "kwargs": {}, "options": {}, "subtask_type": None,
            "immutable": False}
ERRBACK = {**CALLBACK, "task": "alert"}
CHORD = {**CALLBACK, "task": "tsum", "chord_size": 2}

# One message with every option set, spelled once for Celery and once for djtasks.
CELERY_FULL = {
    "eta": ETA, "expires": EXPIRES, "group_id": "group-1", "group_index": 2, "retries": 3,
    "time_limit": 30, "soft_time_limit": 20.5, "root_id": "root-1", "parent_id": "parent-1",
    "shadow": "add-shadow", "reply_to": "reply-queue", "callbacks": [CALLBACK],
    "errbacks": [ERRBACK], "chain": [CALLBACK, ERRBACK], "chord": CHORD,
    "ignore_result": True, "replaced_task_nesting": 1, "origin": "gen1@elsewhere",
    "stamped_headers": ["on_shelf"], "on_shelf": "yes",
}
DJTASKS_FULL = {
    "eta": ETA, "expires": EXPIRES, "group": "group-1", "group_index": 2, "retries": 3,
    "time_limit": 30, "soft_time_limit": 20.5, "root_id": "root-1", "parent_id": "parent-1",
    "shadow": "add-shadow", "reply_to": "reply-queue", "callbacks": [CALLBACK],
    "errbacks": [ERRBACK], "chain": [CALLBACK, ERRBACK], "chord": CHORD,
    "ignore_result": True, "replaced_task_nesting": 1, "origin": "gen1@elsewhere",
    "stamped_headers": ["on_shelf"], "stamps": {"on_shelf": "yes"},
}
ARGS, KWARGS = (2, "two", [2.0]), {"y": {"nested": None}}


@pytest.fixture
def celery_app():
    app = Celery("compat", broker="memory://", set_as_current=False)

    @app.task(name="add", shared=False)  # shared tasks would leak into the next test's app
    def add(x, y):
        return x + y

    yield app
    app.close()


def celery_message(app, task_id, options):
    headers, properties, body, _ = app.amqp.as_task_v2(task_id, "add", ARGS, KWARGS, **options)
    return headers, properties, body


def through_memory_broker(wire: WireMessage, **publish_options):
    """Publish ``wire`` on kombu's memory transport as JSON and return the received message."""
    queue_name = f"test-protocol-{uuid.uuid4()}"
    with Connection("memory://") as conn, conn.SimpleQueue(queue_name) as queue:
        queue.put(wire.body, headers=wire.headers, serializer="json",
                  **publish_options, **wire.properties)
        received = queue.get(timeout=1)
        received.ack()
        return received


@pytest.mark.parametrize(("celery_options", "djtasks_options"), [
    pytest.param({}, {}, id="defaults"),
    pytest.param(CELERY_FULL, DJTASKS_FULL, id="every-option"),
])
def test_to_wire_builds_celery_as_task_v2_message(celery_app, celery_options, djtasks_options):
    task_id = new_task_id()
    headers, properties, body = celery_message(celery_app, task_id, celery_options)

    wire = to_wire(TaskMessage(id=task_id, task="add", args=ARGS, kwargs=KWARGS,
                               **djtasks_options))

    # origin included: both build Celery's "gen<pid>@<host>" in this process by default.
    assert wire.headers == headers
    assert list(wire.headers) == list(headers)
    assert wire.properties == properties
    assert wire.body == body


def test_to_wire_default_origin_is_celery_anon_nodename():
    wire = to_wire(TaskMessage(id="id-1", task="add"))

    assert wire.headers["origin"] == f"gen{os.getpid()}@{socket.gethostname()}"
    assert wire.headers["root_id"] == wire.properties["correlation_id"] == "id-1"


def test_long_argsrepr_is_a_bounded_prefix_of_repr(celery_app):
    args = ("x" * 5000, list(range(1000)))
    wire = to_wire(TaskMessage(id="id-1", task="add", args=args, kwargs={"k": "v" * 5000}))
    headers, _, _ = celery_message(celery_app, "id-1", {})

    # Celery's saferepr cuts inside each long string and may overrun the limit a little;
    # ours cuts the whole repr once. Both stay near 1024 characters, ours never above.
    assert len(wire.headers["argsrepr"]) == REPR_MAXSIZE
    assert wire.headers["argsrepr"] == repr(args)[: REPR_MAXSIZE - 3] + "..."
    assert len(wire.headers["kwargsrepr"]) == REPR_MAXSIZE
    assert headers["argsrepr"] == repr(ARGS)  # short values: identical to Celery


def test_argsrepr_survives_a_broken_repr():
    class Broken:
        def __repr__(self):
            raise RuntimeError("boom")

    wire = to_wire(TaskMessage(id="id-1", task="add", args=(Broken(),)))

    assert wire.headers["argsrepr"] == "<unrepresentable tuple: RuntimeError('boom')>"


def test_from_wire_reads_celery_message(celery_app):
    headers, properties, body = celery_message(celery_app, "id-1", CELERY_FULL)

    message = from_wire(headers, properties, body)

    assert message == TaskMessage(
        id="id-1", task="add", args=ARGS, kwargs=KWARGS, correlation_id="id-1",
        argsrepr=repr(ARGS), kwargsrepr=repr(KWARGS), **DJTASKS_FULL,
    )
    assert message.eta == ETA
    assert message.eta.utcoffset() == timedelta(hours=5, minutes=30)


@pytest.mark.parametrize("options", [{}, CELERY_FULL], ids=["defaults", "every-option"])
def test_to_wire_of_from_wire_gives_back_celery_message(celery_app, options):
    headers, properties, body = celery_message(celery_app, new_task_id(), options)

    wire = to_wire(from_wire(headers, properties, body))

    assert (wire.headers, wire.properties, wire.body) == (headers, properties, body)


def test_from_wire_reads_celery_send_task_over_a_broker(celery_app):
    celery_app.conf.task_default_queue = queue_name = f"test-protocol-{uuid.uuid4()}"
    result = celery_app.send_task("add", (1, 2), {"z": 3}, eta=EXPIRES, priority=5,
                                  headers={"x-tenant": "acme"}, compression="zlib")
    with celery_app.connection_for_read() as conn, conn.SimpleQueue(queue_name) as queue:
        received = queue.get(timeout=1)
        received.ack()

    message = from_wire(received.headers, received.properties, received.decode(),
                        received.delivery_info)

    assert (message.id, message.task, message.args, message.kwargs) == (
        result.id, "add", (1, 2), {"z": 3})
    assert message.eta == EXPIRES
    assert message.priority == 5
    assert message.ignore_result is None  # send_task leaves it to the task's option
    # kombu's own "compression" header must not follow the message into a republish.
    assert message.headers == {"x-tenant": "acme"}
    assert message.reply_to == received.properties["reply_to"]


def test_celery_worker_request_reads_to_wire_message(celery_app):
    message = TaskMessage(id="id-1", task="add", args=(1, 2), priority=7,
                          **{**DJTASKS_FULL, "callbacks": None, "chain": None})
    received = through_memory_broker(to_wire(message))

    request = Request(received, app=celery_app, task=celery_app.tasks["add"])

    assert (request.id, request.name, request.root_id, request.parent_id) == (
        "id-1", "add-shadow", "root-1", "parent-1")
    assert request.eta == ETA
    assert request.expires == EXPIRES
    assert request.time_limits == [30, 20.5]
    assert request.argsrepr == "(1, 2)"
    assert request.stamps == {"on_shelf": "yes"}
    assert request.delivery_info["priority"] == 7
    assert request.group_index == 2


def test_every_field_round_trips_through_a_json_broker():
    message = TaskMessage(id="id-1", task="add", args=(1, [2]), kwargs={"z": {"a": 1}},
                          argsrepr="(1, [2])", kwargsrepr="{'z': {'a': 1}}",
                          correlation_id="corr-1", priority=3, headers={"x-tenant": "acme"},
                          **DJTASKS_FULL)
    received = through_memory_broker(to_wire(message), compression="zlib")

    assert from_wire(received.headers, received.properties, received.decode(),
                     received.delivery_info) == message


def test_every_protocol_header_is_written():
    assert set(to_wire(TaskMessage(id="id-1", task="add")).headers) == PROTOCOL_HEADERS


def test_custom_headers_round_trip_beside_protocol_headers():
    message = TaskMessage(id="id-1", task="add", headers={"x-tenant": "acme", "trace": [1, 2]})

    wire = to_wire(message)

    assert wire.headers["x-tenant"] == "acme"
    assert wire.headers["trace"] == [1, 2]
    assert from_wire(wire.headers, wire.properties, wire.body).headers == message.headers


def test_custom_header_may_not_shadow_a_protocol_header():
    with pytest.raises(ProtocolError, match=r"outside the protocol's keys, got \['retries'\]"):
        TaskMessage(id="id-1", task="add", headers={"retries": 5})


def test_wire_containers_are_fresh_copies():
    message = TaskMessage(id="id-1", task="add", kwargs={"a": 1}, callbacks=[CALLBACK],
                          stamped_headers=["s"], stamps={"s": 1})
    wire = to_wire(message)

    wire.body[1]["a"] = 2
    wire.body[2]["callbacks"].append("x")
    wire.headers["stamped_headers"].append("t")

    assert message.kwargs == {"a": 1}
    assert message.callbacks == [CALLBACK]
    assert message.stamped_headers == ["s"]


@pytest.mark.parametrize(("value", "expected"), [
    ("2030-01-02T03:04:05+05:30", datetime(2030, 1, 2, 3, 4, 5, tzinfo=IST)),
    ("2030-01-02T03:04:05.000001Z", datetime(2030, 1, 2, 3, 4, 5, 1, tzinfo=UTC)),
    ("2030-01-02T03:04:05", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),  # naive: UTC
    (datetime(2030, 1, 2, tzinfo=IST), datetime(2030, 1, 2, tzinfo=IST)),  # pickle, yaml
    (datetime(2030, 1, 2), datetime(2030, 1, 2, tzinfo=UTC)),
    (None, None),
    ("", None),
])
def test_from_wire_parses_eta_and_expires(value, expected):
    message = from_wire({"task": "add", "id": "id-1", "eta": value, "expires": value}, {},
                        [[], {}, {}])

    assert message.eta == expected
    assert message.expires == expected
    assert expected is None or message.eta.utcoffset() is not None


def test_aware_datetimes_round_trip_exactly():
    for moment in (ETA, EXPIRES, datetime.now(UTC)):
        wire = to_wire(TaskMessage(id="id-1", task="add", eta=moment, expires=moment))
        message = from_wire(wire.headers, wire.properties, wire.body)
        assert (message.eta, message.expires) == (moment, moment)
        assert message.eta.utcoffset() == moment.utcoffset()


HEADERS = {"task": "add", "id": "id-1"}


@pytest.mark.parametrize(("headers", "body", "error"), [
    pytest.param({}, {"task": "add", "id": "id-1", "args": [], "kwargs": {}},
                 r"^protocol v1 messages are not supported", id="v1-body"),
    pytest.param({"id": "id-1"}, [[], {}, {}],
                 r"^expected a 'task' header \(Celery protocol v2\), got headers \['id'\]",
                 id="no-task"),
    pytest.param({"task": "add"}, [[], {}, {}], r"^expected a 'id' header", id="no-id"),
    pytest.param(None, [[], {}, {}], r"^expected a 'task' header", id="no-headers"),
    pytest.param({**HEADERS, "task": ""}, [[], {}, {}],
                 r"^expected the task name as a non-empty string, got ''", id="empty-task"),
    pytest.param({**HEADERS, "id": 7}, [[], {}, {}],
                 r"^expected the task id as a non-empty string, got 7", id="int-id"),
    pytest.param(HEADERS, [[], {}],
                 r"^expected the body \[args, kwargs, embed\], got \[\[\], \{\}\]$",
                 id="two-items"),
    pytest.param(HEADERS, "args", r"^expected the body \[args, kwargs, embed\], got 'args'",
                 id="string-body"),
    pytest.param(HEADERS, b"\x00raw", r"^expected the body", id="bytes-body"),
    pytest.param(HEADERS, ["a", {}, {}], r"^expected task args as a list or tuple, got str",
                 id="args-str"),
    pytest.param(HEADERS, [[], [], {}], r"^expected task kwargs as a mapping, got list",
                 id="kwargs-list"),
    pytest.param(HEADERS, [[], {}, None], r"^expected the body's embed as a mapping, got None",
                 id="embed-none"),
    pytest.param({**HEADERS, "eta": "tomorrow"}, [[], {}, {}],
                 r"^expected the eta header as an ISO 8601 datetime, got 'tomorrow'",
                 id="eta-garbage"),
    pytest.param({**HEADERS, "expires": 1700000000}, [[], {}, {}],
                 r"^expected the expires header as an ISO 8601 string, got int",
                 id="expires-number"),
    pytest.param({**HEADERS, "timelimit": [1]}, [[], {}, {}],
                 r"^expected the timelimit header as \[hard, soft\], got \[1\]",
                 id="timelimit-short"),
    pytest.param({**HEADERS, "retries": "3"}, [[], {}, {}],
                 r"^expected the retries header as an integer, got '3'", id="retries-str"),
])
def test_from_wire_rejects_malformed_messages(headers, body, error):
    with pytest.raises(ProtocolError, match=error):
        from_wire(headers, {}, body)


def test_from_wire_fills_missing_optional_headers():
    message = from_wire({"task": "add", "id": "id-1"}, None, ((1,), {}, {}))

    assert message == TaskMessage(id="id-1", task="add", args=(1,), ignore_result=None)


def test_from_wire_reads_priority_from_delivery_info_when_properties_lack_it():
    message = from_wire(HEADERS, {}, [[], {}, {}], {"priority": 9})

    assert message.priority == 9


def test_task_message_normalises_and_validates():
    assert TaskMessage(id="id-1", task="add", args=[1, 2]).args == (1, 2)
    with pytest.raises(ProtocolError, match=r"^expected eta as a timezone-aware datetime"):
        TaskMessage(id="id-1", task="add", eta=datetime(2030, 1, 1))


def test_replace_returns_a_changed_copy():
    message = TaskMessage(id="id-1", task="add", retries=1)

    retried = message.replace(retries=2, eta=EXPIRES)

    assert (retried.retries, retried.eta, retried.id) == (2, EXPIRES, "id-1")
    assert message.retries == 1


def test_new_task_id_is_a_uuid4_string():
    task_id = new_task_id()

    assert uuid.UUID(task_id).version == 4
    assert task_id != new_task_id()


def test_content_type_constants_match_kombu_registry():
    from kombu.serialization import registry

    assert registry.name_to_type == {
        "json": CONTENT_TYPE_JSON, "pickle": CONTENT_TYPE_PICKLE,
        "yaml": CONTENT_TYPE_YAML, "msgpack": CONTENT_TYPE_MSGPACK,
    }


@pytest.mark.parametrize("accept", [["json"], [CONTENT_TYPE_JSON], ("pickle", "json"), {"json"}])
def test_check_content_type_accepts_names_and_types(accept):
    check_content_type(CONTENT_TYPE_JSON, accept)


def test_check_content_type_rejects_what_accept_does_not_name():
    with pytest.raises(ContentDisallowed) as caught:
        check_content_type(CONTENT_TYPE_PICKLE, ["json"])

    assert str(caught.value) == ("content type 'application/x-python-serialize' is not "
                                 "accepted (accept_content: ['json'])")
    assert isinstance(caught.value, ProtocolError)


def test_check_content_type_names_an_unknown_serializer():
    with pytest.raises(ImproperlyConfigured, match=r"got 'jsn'$"):
        check_content_type(CONTENT_TYPE_JSON, ["jsn"])


FAR = "9999-12-31T23:59:59-14:00"  # a valid datetime, but in year 10000 once in UTC


@pytest.mark.parametrize("name", ["eta", "expires"])
def test_a_time_past_year_9999_in_utc_is_refused_naming_its_field(name):
    headers = {**to_wire(TaskMessage(id="t", task="x")).headers, name: FAR}
    with pytest.raises(ProtocolError, match=rf"^{name}: expected a datetime before year 10000 in UTC, "
                                            rf"got 9999-12-31T23:59:59-14:00$"):
        from_wire(headers, {}, [[], {}, {}])
    with pytest.raises(ProtocolError, match=rf"^{name}: expected a datetime before year 10000"):
        TaskMessage(id="t", task="x", **{name: datetime.fromisoformat(FAR)})


def test_the_last_time_of_year_9999_in_utc_is_accepted():
    latest = "9999-12-31T23:59:59+00:00"
    headers = {**to_wire(TaskMessage(id="t", task="x")).headers, "eta": latest}
    assert from_wire(headers, {}, [[], {}, {}]).eta == datetime.fromisoformat(latest)


def test_due_time_of_an_unconvertible_eta_is_now():
    # django:// then makes the row visible at once, and the consumer rejects it with the reason.
    assert due_time({"eta": FAR}) is None


def test_a_task_id_longer_than_the_tables_hold_is_refused():
    TaskMessage(id="x" * MAX_ID_LENGTH, task="t")
    with pytest.raises(ProtocolError, match=rf"^id: expected at most {MAX_ID_LENGTH} characters, got 301$"):
        TaskMessage(id="x" * 301, task="t")
    headers = {**to_wire(TaskMessage(id="t", task="x")).headers, "id": "x" * 301}
    with pytest.raises(ProtocolError, match="id: expected at most"):
        from_wire(headers, {}, [[], {}, {}])


def test_task_id_of_gives_no_id_too_long_to_store_a_result_under():
    assert task_id_of({"id": "x" * 301}, {"correlation_id": "y" * 301}) is None
    assert task_id_of({"id": "x" * 301}, {"correlation_id": "short"}) == "short"
    assert task_id_of({"id": "x" * MAX_ID_LENGTH}, {}) == "x" * MAX_ID_LENGTH


def test_summarize_reads_id_name_and_eta_from_the_headers_alone():
    eta = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    wire = protocol.to_wire(protocol.TaskMessage(id="s-1", task="proj.add", eta=eta))
    summary = protocol.summarize(wire.headers, wire.properties)
    assert summary == protocol.Summary(id="s-1", task="proj.add", eta=eta, expires=None)


def test_summarize_never_raises_on_what_is_not_a_task_message():
    assert protocol.summarize({"eta": "not a time", "task": "t", "id": "i"}, {}).eta is None
    assert protocol.summarize(None, None) == protocol.Summary(None, None, None, None)
    assert protocol.summarize({"ticket": "x"}, {"correlation_id": "c"}).id is None  # a control reply
