"""django:// hides a message until its eta; one that a worker gets early anyway (clocks that
disagree) is parked, not run early."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from djtasks.models import ParkedMessage, QueueMessage
from tests.integration.conftest import DATABASES, only_brokers, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES),
              only_brokers("django-sqlite", "django-postgres")]


def test_a_message_visible_before_its_eta_is_parked_not_run(worker, app_settings, broker,
                                                             queue_name, tmp_path):
    path = tmp_path / "runs.txt"
    # The row is stored invisible until its eta, then made visible now: as a worker whose
    # clock runs ahead of the publisher's would see it.
    sent_at = time.time()
    result = tasks.run_at.apply_async((str(path),), countdown=4)
    rows = QueueMessage.objects.using(broker.database).filter(queue=queue_name)
    assert rows.update(visible_at=timezone.now(), created_at=timezone.now()) == 1

    wait_until(lambda: ParkedMessage.objects.filter(task_id=result.id).exists() or path.exists(),
               message="the early message parked")
    assert not path.exists()
    result.get(timeout=60)
    (line,) = path.read_text().splitlines()
    assert float(line.split()[0]) >= sent_at + 4
    worker.wait_for_line(rf"Task tests\.testapp\.tasks\.run_at\[{result.id}\] parked until")
