"""The three pools run the same work over every broker."""

from __future__ import annotations

import pytest

from tests.integration.conftest import DATABASES
from tests.testapp import tasks
from tests.testapp.tasks import CustomError

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


@pytest.mark.parametrize("pool", ["prefork", "prefork-parent-fed", "threads", "solo"])
def test_pool_runs_tasks_and_failures(worker_factory, app_settings, pool):
    # prefork: its children consume (the default); parent-fed: the parent feeds them.
    mode = ["-P", "prefork", "--no-consume-in-children"] if pool == "prefork-parent-fed" else ["-P", pool]
    process = worker_factory(*mode, "-c", "2")
    results = [tasks.add.delay(i, 1) for i in range(20)]
    assert [r.get(timeout=30) for r in results] == [i + 1 for i in range(20)]
    with pytest.raises(CustomError):
        tasks.fail.delay().get(timeout=20)
    assert process.stop() == 0
