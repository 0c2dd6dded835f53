"""task_max_deliveries: an acks_late message started too often is failed and dead-lettered."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from djtasks import states
from djtasks.exceptions import WorkerLostError
from djtasks.models import DeadLetter, TaskDelivery
from djtasks.testing import InProcessWorker
from djtasks.worker.deliveries import count_delivery
from tests.testapp import tasks
from tests.unit.memory_broker import drain, run_queued_tasks

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres"])


@pytest.fixture
def limit_two():
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "unit",
                                    "task_max_deliveries": 2}):
        yield
    drain("unit")


@pytest.mark.parametrize("alias", ["default", "postgres"])
def test_count_delivery_counts_per_task_id_and_retry(alias):
    assert [count_delivery(alias, "t", 0) for _ in range(3)] == [1, 2, 3]
    assert count_delivery(alias, "t", 1) == 1
    assert count_delivery(alias, "u", 0) == 1
    assert TaskDelivery.objects.using(alias).get(task_id="t", retries=0).count == 3


@pytest.mark.usefixtures("limit_two")
def test_a_message_past_the_limit_is_not_run_but_failed_and_dead_lettered(tmp_path):
    path = tmp_path / "runs"
    for _ in range(3):  # the same message, delivered three times
        result = tasks.record_late.apply_async((str(path), "x"), task_id="poison")
    run_queued_tasks()

    assert path.read_text().count("start x") == 2
    assert result.state == states.FAILURE
    with pytest.raises(WorkerLostError, match=r"delivered 3 times .* keeps killing the worker"):
        result.get(timeout=1)
    dead = DeadLetter.objects.get()
    assert (dead.task_id, dead.task_name, dead.deliveries) == (
        "poison", "tests.testapp.tasks.record_late", 3)
    assert dead.queue == "unit"
    assert "keeps killing" in dead.reason
    assert drain("unit") == []  # acknowledged


@pytest.mark.usefixtures("limit_two")
def test_a_dead_letter_keeps_the_message_as_received_to_replay_it(tmp_path):
    path = tmp_path / "runs"
    for _ in range(3):
        tasks.record_late.apply_async((str(path), "x"), task_id="kept", priority=3)
    run_queued_tasks()

    dead = DeadLetter.objects.get()
    assert dead.replay_refusal() is None
    assert (dead.queue, dead.content_type) == ("unit", "application/json")
    assert dead.headers["id"] == "kept"
    assert dead.headers["task"] == "tests.testapp.tasks.record_late"
    assert dead.properties["correlation_id"] == "kept"
    assert dead.properties["priority"] == 3
    assert json.loads(bytes(dead.body))[:2] == [[str(path), "x"], {}]


@pytest.mark.usefixtures("limit_two")
def test_tasks_acknowledged_early_are_not_counted(tmp_path):
    path = tmp_path / "runs"
    for _ in range(3):
        tasks.record.apply_async((str(path), "x"), task_id="early")
    run_queued_tasks()

    assert path.read_text().count("x") == 3
    assert not TaskDelivery.objects.exists()
    assert not DeadLetter.objects.exists()


def test_no_limit_when_the_setting_is_none(tmp_path):
    path = tmp_path / "runs"
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "unit",
                                    "task_max_deliveries": None}):
        for _ in range(3):
            tasks.record_late.apply_async((str(path), "x"), task_id="unbounded")
        run_queued_tasks()
    assert path.read_text().count("start x") == 3
    assert not DeadLetter.objects.exists()


@pytest.mark.usefixtures("limit_two")
def test_a_queue_added_at_run_time_is_where_its_dead_letter_goes_back(tmp_path):
    """add_consumer after start: the dead letter names the added queue, not the first one."""
    path = tmp_path / "runs"
    with InProcessWorker(queues=["unit"]) as worker:
        worker.consumer.add_queue("added", exchange="added-x", routing_key="added-key")
        worker.queues.append("added")  # join() waits for it too
        for _ in range(3):
            tasks.record_late.apply_async((str(path), "x"), task_id="moved", queue="added",
                                          exchange="added-x", routing_key="added-key")
        worker.join(timeout=30, propagate=False)

    dead = DeadLetter.objects.get()
    assert (dead.exchange, dead.routing_key) == ("added-x", "added-key")
    assert dead.queue == "added"
    drain("added")
