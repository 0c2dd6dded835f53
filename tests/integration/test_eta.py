"""countdown and eta on real workers: never early, durable across restarts, not held in memory.

On django:// a message with an eta waits invisible in its queue; on RabbitMQ and Redis the
worker parks it in the database and acks it, and the holder of the release lease sends it
back when due. The same tests run over the four brokers.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import transaction

from djtasks import states
from djtasks.exceptions import TaskRevokedError
from djtasks.models import ParkedMessage, QueueMessage
from tests.integration.conftest import DATABASES, WorkerProcess, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


def node_name() -> str:
    # Its own node name: two workers of one name (another test's, still stopping) would
    # fight over the name's remote-control queue.
    return f"eta-{uuid.uuid4().hex[:8]}@%h"


def runs(path: Path) -> dict[str, list[float]]:
    """Task id -> the times it ran, from the lines run_at() appended to ``path``."""
    found: dict[str, list[float]] = {}
    for line in path.read_text().splitlines() if path.exists() else ():
        when, task_id = line.split()
        found.setdefault(task_id, []).append(float(when))
    return found


def publishing(broker):
    """Publish in one transaction on django:// (one commit for a thousand rows), else as usual."""
    if broker.is_django:
        return transaction.atomic(using=broker.database)
    return contextlib.nullcontext()


def waiting(broker, queue: str) -> int:
    """How many messages of ``queue`` wait for their eta: parked rows, or invisible queue rows."""
    if broker.is_django:
        return QueueMessage.objects.using(broker.database).filter(queue=queue).count()
    return ParkedMessage.objects.filter(queue=queue).count()


def rss_kib(worker: WorkerProcess) -> int:
    """The resident memory of the worker's main process, from /proc."""
    for line in Path(f"/proc/{worker.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc status")


def send_run_at(path: Path, count: int, countdown: float, queue: str, broker) -> dict[str, float]:
    """Send ``count`` run_at() calls; return task id -> the earliest time it may run."""
    earliest = {}
    with publishing(broker):
        for _ in range(count):
            sent = time.time()  # the eta is at least this plus the countdown
            result = tasks.run_at.apply_async((str(path),), countdown=countdown, queue=queue)
            earliest[result.id] = sent + countdown
    return earliest


def test_a_thousand_eta_tasks_survive_a_worker_restart(worker_factory, app_settings, broker,
                                                       queue_name, tmp_path):
    queue, path = f"{queue_name}-restart", tmp_path / "runs.txt"
    first = worker_factory("-c", "2", "-Q", queue, "-n", node_name())
    earliest = send_run_at(path, 1000, 12, queue, broker)
    wait_until(lambda: waiting(broker, queue) == 1000, timeout=60,
               message="all 1,000 messages parked (or queued, on django://)")
    assert not path.exists(), "none ran before its eta"
    assert first.stop() == 0

    worker_factory("-c", "2", "-Q", queue, "-n", node_name())
    wait_until(lambda: len(runs(path)) == 1000, timeout=120, interval=0.5,
               message="all 1,000 tasks ran after the restart")

    ran = runs(path)
    assert set(ran) == set(earliest)
    assert all(len(times) == 1 for times in ran.values()), "each ran exactly once"
    early = {task_id for task_id, (when,) in ran.items() if when < earliest[task_id]}
    assert not early, f"{len(early)} ran before their eta"
    # A task's record is written before its ack, and django:// deletes acked rows in a batch
    # a moment later: wait for the last one rather than race it.
    wait_until(lambda: waiting(broker, queue) == 0, timeout=10, message="every message acknowledged")


def test_ten_thousand_one_hour_countdowns_leave_worker_memory_flat(worker_factory, app_settings,
                                                                   broker, queue_name, tmp_path):
    queue, path = f"{queue_name}-memory", tmp_path / "runs.txt"
    worker = worker_factory("-c", "1", "-Q", queue, "-n", node_name())
    # Warm up every path (parking, the database, the broker) before the first measure.
    send_run_at(path, 200, 3600, queue, broker)
    assert tasks.add.apply_async((1, 1), queue=queue).get(timeout=60) == 2
    wait_until(lambda: waiting(broker, queue) == 200, timeout=60, message="warm-up parked")
    before = rss_kib(worker)

    send_run_at(path, 10_000, 3600, queue, broker)
    wait_until(lambda: waiting(broker, queue) == 10_200, timeout=300, interval=0.5,
               message="10,000 messages parked (or queued, on django://)")
    # A message sent after them has run: the worker received (and parked) everything before it.
    assert tasks.add.apply_async((2, 2), queue=queue).get(timeout=60) == 4
    after = rss_kib(worker)

    assert after - before < 10 * 1024, f"worker RSS grew from {before} KiB to {after} KiB"
    assert not path.exists()
    # Nobody is to run them in an hour.
    ParkedMessage.objects.filter(queue=queue).delete()
    QueueMessage.objects.using(broker.database).filter(queue=queue).delete()


def test_an_eta_message_whose_expiry_passes_first_is_revoked_expired(worker, app_settings, tmp_path):
    path = tmp_path / "runs.txt"
    result = tasks.run_at.apply_async((str(path),), countdown=3600, expires=2)
    with pytest.raises(TaskRevokedError, match="expired"):
        result.get(timeout=60)
    assert result.state == states.REVOKED
    assert not path.exists()
    worker.wait_for_line(rf"Task tests\.testapp\.tasks\.run_at\[{result.id}\] expired")


def test_countdown_never_runs_early(worker, app_settings, broker, queue_name, tmp_path):
    path = tmp_path / "runs.txt"
    # Half parked (more than a second ahead), half held briefly in memory.
    earliest = {**send_run_at(path, 10, 3, queue_name, broker),
                **send_run_at(path, 10, 0.5, queue_name, broker)}
    wait_until(lambda: len(runs(path)) == 20, timeout=60, message="all 20 ran")

    ran = runs(path)
    assert {task_id: len(times) for task_id, times in ran.items()} == dict.fromkeys(earliest, 1)
    early = {task_id: earliest[task_id] - when for task_id, (when,) in ran.items()
             if when < earliest[task_id]}
    assert not early, f"ran early by (seconds): {early}"


def test_an_eta_datetime_is_kept_to(worker, app_settings, tmp_path):
    path = tmp_path / "runs.txt"
    eta = datetime.now(UTC) + timedelta(seconds=2)
    result = tasks.run_at.apply_async((str(path),), eta=eta)
    result.get(timeout=60)
    ((when,),) = runs(path).values()
    assert when >= eta.timestamp()
