"""result_extended: the task's arguments stored as JSON beside its name, worker and queue."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.testapp import tasks
from tests.unit.memory_broker import run_queued_tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("extended", [True, False])
def test_result_extended_stores_the_arguments(extended):
    settings = {"broker_url": "memory://", "task_default_queue": "extended", "result_extended": extended}
    with override_settings(DJTASKS=settings):
        result = tasks.add.apply_async((2,), {"y": 3})
        run_queued_tasks()
        assert result.get(timeout=1) == 5
        assert (result.name, result.queue) == ("tests.testapp.tasks.add", "extended")
        assert result.worker == "testing@localhost"
        if extended:
            assert (result.args, result.kwargs) == ([2], {"y": 3})
        else:
            assert (result.args, result.kwargs) == (None, None)
