"""Revoke a countdown task from the admin's waiting lists on real workers: it never runs.

On django:// the message waits invisible in the queue table (the queue messages page); on
RabbitMQ and Redis the worker parks it in the database (the parked messages page).
"""

from __future__ import annotations

import uuid

import pytest

from djtasks import states
from djtasks.models import ParkedMessage, QueueMessage
from tests.integration.conftest import DATABASES, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


def waiting_page(broker, task_id: str) -> str:
    """The admin URL of the row that holds ``task_id`` while it waits for its countdown."""
    if broker.is_django:
        rows = QueueMessage.objects.using(broker.database).filter(payload__contains=task_id)
        return f"/admin/djtasks/queuemessage/{rows.get().pk}/"
    return f"/admin/djtasks/parkedmessage/{ParkedMessage.objects.get(task_id=task_id).pk}/"


def test_a_countdown_task_revoked_from_the_waiting_list_never_runs(worker_factory, app_settings,
                                                                   broker, admin_client, tmp_path):
    path = tmp_path / "runs"
    worker_factory("-c", "1", "-n", f"revoke-wait-{uuid.uuid4().hex[:8]}@%h")
    result = tasks.record.apply_async((str(path), "late"), countdown=6)
    if not broker.is_django:
        wait_until(lambda: ParkedMessage.objects.filter(task_id=result.id).exists(), timeout=30,
                   message="the worker parked the countdown task")
    page = waiting_page(broker, result.id)
    assert result.id in admin_client.get(f"{page}change/").content.decode()

    response = admin_client.post(f"{page}action/revoke/", follow=True)
    assert f"Revoked task {result.id}" in response.content.decode()

    wait_until(lambda: result.state == states.REVOKED, timeout=60,
               message="the worker skipped the revoked task when it came due")
    assert tasks.add.delay(1, 1).get(timeout=30) == 2
    assert not path.exists(), "the revoked task never ran"
