"""@task(sensitive=True): arguments shown as "[hidden]" and never stored as JSON."""

from __future__ import annotations

import kombu
import pytest
from django.test import override_settings

from djtasks import states, task
from djtasks.canvas import chain
from djtasks.models import TaskResult
from djtasks.protocol import TaskMessage
from djtasks.task import HIDDEN_ARGUMENTS, Request
from djtasks.worker.events import EventSender, TaskEvents
from djtasks.worker.snapshots import request_info
from tests.testapp import tasks
from tests.unit.memory_broker import drain, run_queued_tasks


@task(bind=True, sensitive=True, max_retries=0)
def retry_secret(self, card):
    raise self.retry(countdown=0)


EXTENDED = {"broker_url": "memory://", "task_default_queue": "sensitive", "result_extended": True}


@pytest.fixture
def extended():
    drain("sensitive")
    with override_settings(DJTASKS=EXTENDED):
        yield
    drain("sensitive")


def test_sensitive_is_a_task_option_and_a_typo_names_it():
    assert tasks.secret_add.sensitive is True
    assert tasks.add.sensitive is False
    with pytest.raises(TypeError, match="did you mean 'sensitive'"):
        task(sensitiv=True)(lambda: None)


def test_a_sensitive_call_publishes_hidden_reprs_and_a_plain_one_its_arguments(extended):
    tasks.secret_add.delay(2, y=40)
    tasks.add.delay(2, y=40)
    secret, plain = (message.headers for message in drain("sensitive"))
    assert (secret["argsrepr"], secret["kwargsrepr"]) == (HIDDEN_ARGUMENTS, HIDDEN_ARGUMENTS)
    assert (plain["argsrepr"], plain["kwargsrepr"]) == ("(2,)", "{'y': 40}")


def test_the_callers_own_argsrepr_is_kept(extended):
    tasks.secret_add.apply_async((2, 40), argsrepr="(<card>, <amount>)")
    (message,) = drain("sensitive")
    assert message.headers["argsrepr"] == "(<card>, <amount>)"
    assert message.headers["kwargsrepr"] == HIDDEN_ARGUMENTS


@pytest.mark.django_db(transaction=True)
def test_the_worker_stores_only_the_reprs_even_with_result_extended(extended):
    result = tasks.secret_add.delay(2, 40)
    plain = tasks.add.delay(2, 40)
    run_queued_tasks()
    assert result.get(timeout=1) == 42
    row = TaskResult.objects.get(task_id=result.id)
    assert (row.task_args, row.task_kwargs) == (HIDDEN_ARGUMENTS, HIDDEN_ARGUMENTS)
    assert (row.args, row.kwargs) == (None, None)
    assert TaskResult.objects.get(task_id=plain.id).args == [2, 40]  # the setting is on


@pytest.mark.django_db(transaction=True)
def test_a_sensitive_chain_step_published_by_the_worker_is_hidden_too(extended):
    result = chain(tasks.add.s(1, 1), tasks.secret_add.s(40))()
    run_queued_tasks()
    assert result.get(timeout=1) == 42
    row = TaskResult.objects.get(task_id=result.id)
    assert row.status == states.SUCCESS
    assert (row.task_args, row.args) == (HIDDEN_ARGUMENTS, None)


def test_the_received_event_shows_a_sensitive_tasks_arguments_hidden():
    sender = EventSender(lambda: kombu.Connection("memory://"), "w@h", task_events=True)
    message = TaskMessage(id="t", task=tasks.secret_add.name, args=(1, 2), kwargs={"k": 3})
    job = Request(message, hostname="w@h")
    TaskEvents(sender).received(job, sensitive=True)
    TaskEvents(sender).received(job)
    hidden, shown = (sender._queue.get_nowait() for _ in range(2))
    assert (hidden["args"], hidden["kwargs"]) == (HIDDEN_ARGUMENTS, HIDDEN_ARGUMENTS)
    assert (shown["args"], shown["kwargs"]) == ("(1, 2)", "{'k': 3}")


def test_inspect_lists_a_sensitive_request_by_its_reprs():
    message = TaskMessage(id="t", task=tasks.secret_add.name, args=(1, 2), kwargs={"k": 3},
                          argsrepr=HIDDEN_ARGUMENTS)
    hidden = request_info(message, "w@h", {}, sensitive=True)
    assert (hidden["args"], hidden["kwargs"]) == (HIDDEN_ARGUMENTS, HIDDEN_ARGUMENTS)
    shown = request_info(message, "w@h", {})
    assert (shown["args"], shown["kwargs"]) == ([1, 2], {"k": 3})


@pytest.mark.django_db(transaction=True)
def test_giving_up_on_retries_names_no_argument_of_a_sensitive_task(extended):
    result = retry_secret.delay("4111-1111-1111-1111")
    run_queued_tasks()
    row = TaskResult.objects.get(task_id=result.id)
    assert row.status == states.FAILURE
    assert row.result["exc_type"] == "MaxRetriesExceededError"
    assert "[hidden]" in str(row.result["exc_message"])
    assert "4111" not in str(row.result) + row.traceback
