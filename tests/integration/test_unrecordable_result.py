"""When the pool member cannot record a result, the worker records the failure instead.

PostgreSQL refuses a NUL character in jsonb, so a task returning one cannot be stored by
the process that ran it; the caller must still learn of it at once, not by a timeout.
"""

from __future__ import annotations

import pytest

from djtasks import states
from djtasks.exceptions import DjtasksError
from tests.integration.conftest import DATABASES, only_brokers
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES),
              only_brokers("django-postgres", "amqp", "redis")]  # results on PostgreSQL


def test_a_result_that_cannot_be_stored_fails_the_task_at_once(worker, app_settings):
    result = tasks.nul_char.delay()
    with pytest.raises(DjtasksError, match="could not run or record the task"):
        result.get(timeout=20)
    assert result.state == states.FAILURE
    assert tasks.add.delay(1, 1).get(timeout=20) == 2
