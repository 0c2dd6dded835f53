"""Replay a dead letter from the admin on real workers: it runs once, and only once."""

from __future__ import annotations

import uuid

import pytest

import djtasks
from djtasks import states
from djtasks.exceptions import WorkerLostError
from djtasks.models import DeadLetter
from tests.integration.conftest import DATABASES, wait_until
from tests.testapp import e2e, tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]

ENV = {"DJTASKS_TASK_MAX_DELIVERIES": "1",
       # Redelivery of a message whose worker died, on django:// and Redis, comes this fast.
       "DJTASKS_BROKER_TRANSPORT_OPTIONS": '{"visibility_timeout": 3}'}


def test_a_dead_letter_replayed_from_the_admin_runs_once(worker_factory, app_settings,
                                                         admin_client, tmp_path):
    cure, starts = tmp_path / "cured", tmp_path / "starts.txt"
    worker_factory("-c", "1", "-n", f"replay-{uuid.uuid4().hex[:8]}@%h", env=ENV)
    result = e2e.poison_until.delay(str(cure), str(starts))
    with pytest.raises(WorkerLostError, match="delivered 2 times"):
        result.get(timeout=120)
    dead = DeadLetter.objects.get(task_id=result.id)
    assert starts.read_text().count("start") == 1
    cure.touch()

    response = admin_client.post(f"/admin/djtasks/deadletter/{dead.pk}/action/replay/", follow=True)
    assert f"Replayed tests.testapp.e2e.poison_until[{result.id}]" in response.content.decode()
    again = admin_client.post(f"/admin/djtasks/deadletter/{dead.pk}/action/replay/", follow=True)
    assert "it was replayed already" in again.content.decode()

    # A new AsyncResult each time: the first one keeps the FAILURE it saw.
    wait_until(lambda: djtasks.app.AsyncResult(result.id).state == states.SUCCESS, timeout=60,
               message="the replayed task ran on the worker")
    assert djtasks.app.AsyncResult(result.id).get(timeout=1) == "cured"
    # The worker has one slot: a task sent after the replay has run once everything before it did.
    assert tasks.add.delay(2, 2).get(timeout=30) == 4
    assert starts.read_text().count("start") == 2, "the replay ran once"
    assert DeadLetter.objects.get(task_id=result.id).replayed_at is not None
