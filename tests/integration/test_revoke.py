"""Revoked ids are kept in the database: running workers and workers started later skip them."""

from __future__ import annotations

import pytest

import djtasks
from djtasks import states
from djtasks.canvas import group
from djtasks.exceptions import TaskRevokedError
from tests.integration.conftest import DATABASES, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


def test_an_id_revoked_before_it_is_sent_is_skipped_by_a_running_worker(worker, app_settings):
    djtasks.app.control.revoke("revoked-before-sending")
    result = tasks.add.apply_async((1, 1), task_id="revoked-before-sending")
    with pytest.raises(TaskRevokedError):
        result.get(timeout=30)
    assert result.state == states.REVOKED
    worker.wait_for_line(r"Discarding revoked task: tests\.testapp\.tasks\.add\[revoked-before-sending\]")


def test_a_worker_started_after_the_revoke_skips_the_group(worker_factory, app_settings, queue_name,
                                                            tmp_path):
    later = f"{queue_name}-later"
    runs = tmp_path / "runs.txt"
    result = group(tasks.record.s(str(runs), f"t{i}").set(queue=later) for i in range(5))()
    result.revoke()
    kept = tasks.add.apply_async((2, 2), queue=later)
    worker_factory("-c", "1", "-Q", later)
    assert kept.get(timeout=30) == 4
    wait_until(lambda: all(member.state == states.REVOKED for member in result.results),
               timeout=30, message="every member revoked")
    assert not runs.exists()
