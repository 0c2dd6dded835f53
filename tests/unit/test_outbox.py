"""The outbox on kombu's memory:// broker: written in the transaction, sent after its commit.

The broker behaviours (a worker relaying what a dead publisher left) are in
tests/integration/test_outbox.py; these are the decisions and the rows.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

import djtasks
from djtasks import protocol
from djtasks.exceptions import MessageTooLarge
from djtasks.models import OutboxMessage
from djtasks.publish import RELAY_AFTER, outbox_fields
from tests.testapp import tasks
from tests.unit.memory_broker import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def memory_app():
    drain()
    with override_settings(DJTASKS={"broker_url": "memory://"}):
        yield
    drain()


def sent_ids() -> list[str]:
    return [message.headers["id"] for message in drain()]


def test_committed_it_is_sent_and_its_row_deleted():
    with transaction.atomic():
        result = tasks.add.delay_on_commit(1, 2)
        row = OutboxMessage.objects.get()
        assert (row.task_id, row.task_name, row.queue) == (result.id, tasks.add.name, "celery")
        assert sent_ids() == []  # nothing on the broker before the commit
    assert sent_ids() == [result.id]
    assert not OutboxMessage.objects.exists()


def test_rolled_back_nothing_is_sent():
    with transaction.atomic():
        tasks.add.apply_async_on_commit((1, 2), priority=3)
        transaction.set_rollback(True)
    assert sent_ids() == []
    assert not OutboxMessage.objects.exists()


def test_without_a_transaction_or_the_setting_a_publish_is_direct():
    assert sent_ids() == []
    result = tasks.add.delay_on_commit(1, 2)  # autocommit: sent now
    assert sent_ids() == [result.id]
    with transaction.atomic():
        plain = tasks.add.delay(3, 4)  # task_outbox is off: not tied to the transaction
        assert sent_ids() == [plain.id]
        assert not OutboxMessage.objects.exists()


def test_task_outbox_sends_every_publish_in_a_transaction_after_its_commit():
    with override_settings(DJTASKS={"broker_url": "memory://", "task_outbox": True}):
        with transaction.atomic():
            plain = tasks.add.delay(3, 4)
            assert sent_ids() == []
        assert sent_ids() == [plain.id]


def test_a_stranded_row_is_relayed_unchanged_once_old_enough():
    app = djtasks.app
    message = protocol.TaskMessage(id=protocol.new_task_id(), task=tasks.add.name, args=(5, 6),
                                   priority=4, headers={"tenant": "a"})
    route = app.route(tasks.add.name, (5, 6), {}, {})
    OutboxMessage.objects.create(**outbox_fields(app.publisher.prepare(message, route)))
    now = timezone.now()
    assert not app.publisher.any_stranded(now)  # its own process may still send it
    later = now + timedelta(seconds=RELAY_AFTER + 1)
    assert app.publisher.any_stranded(later)
    assert app.publisher.relay_stranded(later, limit=100) == 1
    [sent] = drain()
    assert (sent.headers["id"], sent.headers["tenant"], sent.properties["priority"]) == (
        message.id, "a", 4)
    assert sent.decode()[:2] == [[5, 6], {}]
    assert not OutboxMessage.objects.exists()


def test_the_size_limit_is_checked_before_anything_is_written():
    with pytest.raises(MessageTooLarge), transaction.atomic():
        tasks.identity.delay_on_commit("x" * 2_000_000)
    assert not OutboxMessage.objects.exists()
