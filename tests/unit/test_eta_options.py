"""countdown= and eta=: what they put in the message's eta header, and what they refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kombu.utils.json import dumps, loads

from djtasks import App, conf, protocol
from djtasks.application import eta_time
from djtasks.canvas.signature import Signature
from tests.unit.memory_broker import drain

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def memory_app():
    drain()
    app = App(conf.load({"broker_url": "memory://"}, {}))

    @app.task(name="eta.add")
    def add(x, y):
        return x + y

    yield app
    app.close()
    drain()


def sent_eta() -> datetime | None:
    (message,) = drain()
    return protocol.from_wire(message.headers, message.properties, message.decode()).eta


def test_countdown_is_seconds_from_now():
    assert eta_time(10, None, now=NOW) == NOW + timedelta(seconds=10)
    assert eta_time(0.5, None, now=NOW) == NOW + timedelta(seconds=0.5)


def test_eta_is_kept_as_given_and_may_be_an_iso_string():
    later = NOW + timedelta(hours=1)
    assert eta_time(None, later, now=NOW) == later
    assert eta_time(None, later.isoformat(), now=NOW) == later
    assert eta_time(None, None, now=NOW) is None


def test_a_naive_eta_is_refused_by_name():
    with pytest.raises(ValueError, match="eta: expected an aware datetime"):
        eta_time(None, datetime(2026, 1, 1), now=NOW)
    with pytest.raises(ValueError, match="eta: expected an aware datetime"):
        eta_time(None, "2026-01-01T00:00:00", now=NOW)


def test_countdown_and_eta_together_are_refused():
    with pytest.raises(TypeError, match="expected countdown or eta, got both"):
        eta_time(5, NOW, now=NOW)


@pytest.mark.parametrize(("countdown", "eta"), [("5", None), (True, None), (None, 5)])
def test_wrong_types_are_refused(countdown, eta):
    with pytest.raises(TypeError):
        eta_time(countdown, eta, now=NOW)


def test_apply_async_countdown_sets_the_eta_header(memory_app):
    before = datetime.now(UTC)
    memory_app.tasks["eta.add"].apply_async((1, 2), countdown=30)
    eta = sent_eta()
    assert before + timedelta(seconds=30) <= eta <= datetime.now(UTC) + timedelta(seconds=30)


def test_send_task_eta_sets_the_eta_header(memory_app):
    when = datetime.now(UTC) + timedelta(minutes=5)
    memory_app.send_task("eta.add", (1, 2), eta=when)
    assert sent_eta() == when


def test_a_signature_carries_countdown_to_its_call(memory_app):
    before = datetime.now(UTC)
    memory_app.tasks["eta.add"].s(1, 2).set(countdown=60).apply_async()
    assert sent_eta() >= before + timedelta(seconds=60)


def test_a_signature_eta_survives_its_wire_form(memory_app):
    when = datetime.now(UTC) + timedelta(minutes=5)
    sig = memory_app.tasks["eta.add"].signature((1, 2), eta=when)
    Signature.from_dict(loads(dumps(sig.to_dict())), memory_app).apply_async()
    assert sent_eta() == when


def test_without_countdown_or_eta_the_header_is_empty(memory_app):
    memory_app.tasks["eta.add"].delay(1, 2)
    (message,) = drain()
    assert message.headers["eta"] is None


def test_naive_eta_in_apply_async_raises_before_publishing(memory_app):
    with pytest.raises(ValueError, match="eta"):
        memory_app.tasks["eta.add"].apply_async((1, 2), eta=datetime(2030, 1, 1))
    assert drain() == []
