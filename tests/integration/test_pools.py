"""The three pools run the same work over every broker."""

from __future__ import annotations

import pytest

from tests.integration.conftest import DATABASES
from tests.testapp import tasks
from tests.testapp.tasks import CustomError

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_pool_runs_tasks_and_failures(worker_factory, app_settings, pool):
    process = worker_factory("-P", pool, "-c", "2")
    results = [tasks.add.delay(i, 1) for i in range(20)]
    assert [r.get(timeout=30) for r in results] == [i + 1 for i in range(20)]
    with pytest.raises(CustomError):
        tasks.fail.delay().get(timeout=20)
    assert process.stop() == 0
