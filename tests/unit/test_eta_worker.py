"""The worker's ETA hand-off: park, hold and release messages that are due later."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kombu
import pytest

import djtasks
from djtasks import states
from djtasks.exceptions import TaskRevokedError
from djtasks.models import BeatLease, DeadLetter, ParkedMessage
from djtasks.testing import InProcessWorker
from djtasks.worker.eta import HOLD, source_queue
from djtasks.worker.release import EtaRelease
from tests.testapp import tasks
from tests.unit.memory_broker import drain, run_queued_tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("memory_broker")]


def receive_once() -> None:
    """Let an in-process worker receive what is queued (and park it), without waiting."""
    with InProcessWorker() as worker:
        while worker.consumer.connection.default_channel.queue_declare("unit", passive=True)[1]:
            worker.consumer.step()


def stamped(path: Path) -> list[float]:
    return [float(line.split()[0]) for line in path.read_text().splitlines()]


def test_a_message_due_later_is_parked_and_acked():
    result = tasks.add.apply_async((1, 2), countdown=3600)
    receive_once()

    parked = ParkedMessage.objects.get()
    assert parked.task_id == result.id
    assert parked.task_name == "tests.testapp.tasks.add"
    assert parked.queue == "unit"
    assert parked.eta > datetime.now(UTC) + timedelta(minutes=59)
    assert drain("unit") == []  # acknowledged: no longer in the queue
    assert result.state == states.PENDING


def test_a_released_message_is_the_message_that_was_parked():
    tasks.add.apply_async((1, 2), countdown=3600, priority=3, headers={"custom": "x"})
    with kombu.Connection("memory://") as connection, connection.SimpleQueue("unit") as queue:
        original = queue.get(timeout=1)
        original.requeue()
    receive_once()
    eta = ParkedMessage.objects.get().eta

    released = EtaRelease(djtasks.app, "test", clock=lambda: eta - HOLD).run_once()

    assert released == 1
    assert not ParkedMessage.objects.exists()
    (again,) = drain("unit")
    assert again.body == original.body
    assert again.headers == original.headers
    assert again.content_type == original.content_type
    for key in ("correlation_id", "reply_to", "priority", "delivery_mode"):
        assert again.properties.get(key) == original.properties.get(key), key


def test_nothing_is_released_before_it_is_due():
    tasks.add.apply_async((1, 2), countdown=3600)
    receive_once()
    eta = ParkedMessage.objects.get().eta

    assert EtaRelease(djtasks.app, "test", clock=lambda: eta - HOLD * 2).run_once() == 0
    assert ParkedMessage.objects.count() == 1
    assert drain("unit") == []


def test_a_short_countdown_is_held_in_memory_and_never_runs_early(tmp_path):
    path = tmp_path / "stamps"
    sent = time.time()
    tasks.run_at.apply_async((str(path),), countdown=0.5)
    run_queued_tasks()

    assert not ParkedMessage.objects.exists()
    (ran,) = stamped(path)
    assert ran >= sent + 0.5


def test_join_runs_a_parked_message_once_due_and_not_before(tmp_path):
    path = tmp_path / "stamps"
    result = tasks.run_at.apply_async((str(path),), countdown=2)
    eta = datetime.now(UTC) + timedelta(seconds=2)  # no later than the message's eta
    run_queued_tasks()

    assert result.state == states.SUCCESS
    (ran,) = stamped(path)
    assert ran >= eta.timestamp() - 0.01
    assert not ParkedMessage.objects.exists()


def test_a_parked_message_whose_expiry_passes_is_revoked_expired(tmp_path):
    path = tmp_path / "stamps"
    result = tasks.run_at.apply_async((str(path),), countdown=3600, expires=0.5)
    run_queued_tasks()

    assert result.state == states.REVOKED
    with pytest.raises(TaskRevokedError, match="expired"):
        result.get(timeout=1)
    assert not path.exists()
    assert not ParkedMessage.objects.exists()


def test_a_message_delivered_twice_is_parked_once():
    tasks.add.apply_async((1, 2), countdown=3600)
    with kombu.Connection("memory://") as connection, connection.SimpleQueue("unit") as queue:
        message = queue.get(timeout=1)
        message.requeue()
        queue.put(message.body, headers=message.headers, content_type=message.content_type,
                  content_encoding=message.content_encoding, serializer=None)
    receive_once()

    assert ParkedMessage.objects.count() == 1


def park_row(task_id: str, eta: datetime) -> ParkedMessage:
    return ParkedMessage.objects.create(
        task_id=task_id, task_name="tests.testapp.tasks.add", eta=eta, queue="unit",
        content_type="application/json", content_encoding="utf-8",
        body=b'[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]',
        headers={"lang": "py", "task": "tests.testapp.tasks.add", "id": task_id,
                 "eta": eta.isoformat()},
    )


def test_only_the_holder_of_the_release_lease_releases():
    now = datetime.now(UTC)
    first = EtaRelease(djtasks.app, "first", clock=lambda: now)
    second = EtaRelease(djtasks.app, "second", clock=lambda: now)
    park_row("a", now - timedelta(seconds=1))
    assert first.run_once() == 1

    park_row("b", now - timedelta(seconds=1))
    assert second.run_once() == 0
    assert ParkedMessage.objects.count() == 1
    assert first.run_once() == 1
    assert BeatLease.objects.get(name="eta-release").holder.startswith("first")
    assert [m.headers["id"] for m in drain("unit")] == ["a", "b"]


def test_release_sends_due_messages_in_eta_order_in_batches(monkeypatch):
    monkeypatch.setattr("djtasks.worker.release.BATCH", 3)
    now = datetime.now(UTC)
    for n in range(7):
        park_row(f"t{n}", now - timedelta(seconds=10 - n))
    park_row("later", now + timedelta(hours=1))

    assert EtaRelease(djtasks.app, "x", clock=lambda: now).run_once() == 7

    assert [m.headers["id"] for m in drain("unit")] == [f"t{n}" for n in range(7)]
    assert list(ParkedMessage.objects.values_list("task_id", flat=True)) == ["later"]


def test_source_queue_is_the_routing_key_of_the_default_exchange():
    queues = [kombu.Queue("a", kombu.Exchange("a"), routing_key="a"),
              kombu.Queue("b", kombu.Exchange("x", type="topic"), routing_key="b.#")]
    assert source_queue({"exchange": "", "routing_key": "b"}, queues) == "b"
    assert source_queue({"exchange": "a", "routing_key": "a"}, queues) == "a"
    assert source_queue({"exchange": "x", "routing_key": "b.1"}, queues) == ""  # cannot tell
    assert source_queue({"exchange": "x", "routing_key": "b.1"}, queues[1:]) == "b"


def test_one_queue_is_the_source_only_when_the_exchange_and_key_match_it():
    only = [kombu.Queue("a", kombu.Exchange("a"), routing_key="a")]
    assert source_queue({"exchange": "b", "routing_key": "b"}, only) == ""
    assert source_queue({"exchange": "a", "routing_key": "other"}, only) == ""
    assert source_queue({"exchange": "a", "routing_key": "a"}, only) == "a"


def test_a_parked_message_with_an_expiration_property_is_released():
    """kombu keeps expiration as a string of milliseconds; publish takes seconds."""
    now = datetime.now(UTC)
    row = park_row("exp", now - timedelta(seconds=1))
    row.properties = {"expiration": "60000", "correlation_id": "exp"}
    row.save()

    assert EtaRelease(djtasks.app, "x", clock=lambda: now).run_once() == 1

    (again,) = drain("unit")
    assert again.headers["id"] == "exp"
    assert again.properties["expiration"] == "60000"
    assert not DeadLetter.objects.exists()
