"""Terminate from the task result console stops a running task on a real worker, every broker."""

from __future__ import annotations

import pytest

from djtasks import states
from djtasks.exceptions import TaskRevokedError
from djtasks.models import TaskResult
from tests.integration.conftest import DATABASES, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


def test_terminate_from_the_console_kills_the_running_task_with_the_chosen_signal(
        broker, app_settings, worker_factory, admin_client, monkeypatch, tmp_path):
    # The console reads results where this broker's workers write them.
    monkeypatch.setenv("DJTASKS_TESTS_MODELS_DB", broker.database)
    worker = worker_factory("-c", "1")
    starts = tmp_path / "starts.txt"
    running = tasks.clock_in_tracked.apply_async((str(starts), "long", 300))
    wait_until(lambda: starts.exists() and starts.read_text(), message="the long task started")
    row = wait_until(lambda: TaskResult.objects.using(broker.database)
                     .filter(task_id=running.id, status=states.STARTED).first(),
                     message="its STARTED row")

    response = admin_client.post(f"/admin/djtasks/taskresult/{row.pk}/action/terminate/",
                                 {"signal": "SIGHUP"}, follow=True)

    assert "asked the workers to terminate it with SIGHUP" in response.content.decode()
    worker.wait_for_line(rf"Terminating {running.id} \(SIGHUP\)")
    with pytest.raises(TaskRevokedError, match="terminated"):
        running.get(timeout=30)
    assert running.state == states.REVOKED
    page = admin_client.get(f"/admin/djtasks/taskresult/{row.pk}/change/").content.decode()
    assert 'id="djtasks-action-terminate"' not in page  # finished: nothing left to stop
    assert tasks.add.delay(2, 3).get(timeout=30) == 5  # the pool replaced its child
