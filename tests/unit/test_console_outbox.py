"""The outbox in the admin: rows not sent yet, which of them a worker will send, revoke."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from djtasks.models import OutboxMessage, RevokedTask
from tests.testapp import tasks
from tests.unit.memory_broker import drain

pytestmark = pytest.mark.django_db
OUTBOX = "/admin/djtasks/outboxmessage/"


@pytest.fixture(autouse=True)
def memory_broker():
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "unit"}):
        yield
    drain("unit")


def kept(task, *args, age: float = 0.0) -> OutboxMessage:
    """The outbox row of a call of ``task`` made in this test's transaction, ``age`` s ago.

    The test's transaction never commits, so the row stays, as one whose sender died.
    """
    result = task.apply_async_on_commit(args)
    OutboxMessage.objects.filter(task_id=result.id).update(
        date_created=timezone.now() - timedelta(seconds=age))
    return OutboxMessage.objects.get(task_id=result.id)


def test_the_list_says_which_rows_a_worker_sends(admin_client):
    fresh, left = kept(tasks.add, 1, 2), kept(tasks.add, 3, 4, age=60)
    page = admin_client.get(OUTBOX).content.decode()
    assert fresh.task_id in page
    assert left.task_id in page
    assert page.count("being sent after its commit") == 1
    assert page.count("left by its publisher: a worker sends it") == 1
    assert "is sent by the worker holding the release lease" in page


def test_a_sensitive_tasks_body_is_hidden(admin_client):
    row = kept(tasks.secret_add, 4242424242, 31313131)
    page = admin_client.get(f"{OUTBOX}{row.pk}/change/").content.decode()
    assert "[hidden]" in page
    assert "4242424242" not in page


def test_revoke_from_the_page_revokes_the_task(admin_client):
    row = kept(tasks.add, 1, 2, age=60)
    response = admin_client.post(OUTBOX, {"action": "revoke_tasks",
                                          "_selected_action": [str(row.pk)]}, follow=True)
    assert "Revoked 1 waiting task(s)." in response.content.decode()
    assert RevokedTask.objects.filter(task_id=row.task_id).exists()
