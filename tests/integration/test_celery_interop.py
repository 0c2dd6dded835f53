"""Celery's own client and worker interoperate with djtasks over RabbitMQ and Redis.

Both directions of the canvas are covered: a chain or link/link_error sent by Celery runs on
a djtasks worker, and one sent by djtasks runs on a Celery worker. The Celery worker's
tasks add 1000 to their value (tests/celery_interop_app.py), so a value tells who ran it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery

import djtasks
from djtasks.models import ParkedMessage
from tests.integration.conftest import (
    DATABASES,
    ROOT,
    Broker,
    WorkerProcess,
    only_brokers,
    wait_until,
)
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES),
              only_brokers("amqp", "redis")]

CELERY_RESULTS = os.environ.get("DJTASKS_TESTS_CELERY_RESULTS", "redis://127.0.0.1:6379/14")
ADD = "tests.testapp.tasks.add"


@pytest.fixture
def celery_client(broker, queue_name):
    client = Celery("interop-client", broker=broker.broker_url, backend=CELERY_RESULTS)
    client.conf.task_default_queue = queue_name
    yield client
    client.close()


def celery_queue(queue_name: str) -> str:
    """The Celery worker's queue: not the one the module's djtasks worker consumes."""
    return f"{queue_name}-celery"


@pytest.fixture(scope="module")
def celery_process(broker: Broker, queue_name: str) -> Iterator[WorkerProcess]:
    """A real Celery worker (tests/celery_interop_app.py) on a queue of its own."""
    queue = celery_queue(queue_name)
    env = {**os.environ, "INTEROP_BROKER_URL": broker.broker_url, "INTEROP_QUEUE": queue,
           "INTEROP_RESULT_BACKEND": CELERY_RESULTS, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_interop_app", "worker", "-P", "solo",
         "-Q", queue, "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-l", "INFO", "-n", f"interop-{queue}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    worker = WorkerProcess(process)
    worker._reader = threading.Thread(target=worker._collect, daemon=True)
    worker._reader.start()
    try:
        worker.wait_for_line(r" ready\.$", timeout=60)
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def celery_worker(celery_process: WorkerProcess, queue_name: str) -> str:
    """A running Celery worker: the name of the queue it consumes."""
    return celery_queue(queue_name)


@pytest.fixture
def celery_reader(broker: Broker) -> Iterator[Celery]:
    """A Celery client that reads the Celery worker's results."""
    client = Celery("interop-reader", broker=broker.broker_url, backend=CELERY_RESULTS)
    yield client
    client.close()


# -- a Celery client, a djtasks worker -------------------------------------------------------
def test_celery_send_task_runs_on_runworker(worker, app_settings, celery_client, queue_name):
    sent = celery_client.send_task(ADD, (2, 3), queue=queue_name)
    assert djtasks.app.AsyncResult(sent.id).get(timeout=30) == 5


def test_celery_chain_runs_on_runworker(worker, app_settings, celery_client, queue_name):
    steps = (celery_client.signature(ADD, (2, 2)) | celery_client.signature(ADD, (4,))
             | celery_client.signature(ADD, (8,)))
    sent = steps.apply_async(queue=queue_name)
    # Values without the Celery worker's +1000: every step ran on the djtasks worker.
    assert djtasks.app.AsyncResult(sent.id).get(timeout=30) == 16
    assert djtasks.app.AsyncResult(sent.parent.id).get(timeout=30) == 8
    assert djtasks.app.AsyncResult(sent.parent.parent.id).get(timeout=30) == 4


def test_celery_link_runs_on_runworker(worker, app_settings, celery_client, queue_name):
    frozen = celery_client.signature(ADD, (10,))
    frozen_id = frozen.freeze().id
    unfrozen = celery_client.signature(ADD, (100,))
    sent = celery_client.signature(ADD, (1, 2)).apply_async(queue=queue_name,
                                                            link=[frozen, unfrozen])
    assert djtasks.app.AsyncResult(sent.id).get(timeout=30) == 3
    # The parent's value is prepended to the callback's own arguments.
    assert djtasks.app.AsyncResult(frozen_id).get(timeout=30) == 13
    children = wait_until(lambda: djtasks.app.AsyncResult(sent.id).children, message="children")
    assert frozen_id in [child.id for child in children]
    values = sorted(child.get(timeout=30) for child in children)
    assert values == [13, 103]


def test_celery_link_error_runs_on_runworker(worker, app_settings, celery_client, queue_name,
                                             tmp_path):
    path = tmp_path / "failed-ids"
    errback = celery_client.signature("tests.testapp.tasks.log_failed_id",
                                      kwargs={"path": str(path)})
    sent = celery_client.signature("tests.testapp.tasks.fail", ("no",)).apply_async(
        queue=queue_name, link_error=errback)
    with pytest.raises(tasks.CustomError, match="no"):
        djtasks.app.AsyncResult(sent.id).get(timeout=30)
    wait_until(lambda: path.exists() and path.read_text(), message="errback ran")
    assert path.read_text().split() == [sent.id]


def test_a_celery_countdown_is_parked_and_runs_on_time_on_runworker(worker, app_settings,
                                                                     celery_client, queue_name,
                                                                     tmp_path):
    path = tmp_path / "runs.txt"
    sent_at = time.time()
    sent = celery_client.send_task("tests.testapp.tasks.run_at", (str(path),), countdown=3,
                                   queue=queue_name)
    wait_until(lambda: ParkedMessage.objects.filter(task_id=sent.id).exists() or path.exists(),
               message="parked")
    assert not path.exists(), "not run before its eta"
    djtasks.app.AsyncResult(sent.id).get(timeout=60)
    (line,) = path.read_text().splitlines()
    assert float(line.split()[0]) >= sent_at + 3


# -- a djtasks client, a Celery worker -------------------------------------------------------
def test_celery_worker_runs_a_task_sent_by_djtasks(app_settings, celery_worker, celery_process,
                                                   celery_reader):
    result = tasks.add.apply_async((2, 3), queue=celery_worker)
    assert celery_reader.AsyncResult(result.id).get(timeout=30) == 1005, celery_process.log()


def test_celery_worker_runs_a_djtasks_chain(app_settings, celery_worker, celery_process,
                                            celery_reader):
    result = (tasks.add.s(2, 2) | tasks.add.s(4)).apply_async(queue=celery_worker)
    # Each step adds the Celery worker's 1000: 2+2+1000, then 1004+4+1000.
    assert celery_reader.AsyncResult(result.id).get(timeout=30) == 2008, celery_process.log()
    assert celery_reader.AsyncResult(result.parent.id).get(timeout=30) == 1004


def test_celery_worker_runs_a_djtasks_link(app_settings, celery_worker, celery_process,
                                           celery_reader):
    callback = tasks.add.s(10)
    callback_id = callback.freeze().id
    result = tasks.add.apply_async((1, 1), link=callback, queue=celery_worker)
    assert celery_reader.AsyncResult(result.id).get(timeout=30) == 1002, celery_process.log()
    assert celery_reader.AsyncResult(callback_id).get(timeout=30) == 2012, celery_process.log()


def test_celery_worker_keeps_a_djtasks_eta(app_settings, celery_worker, celery_process,
                                          celery_reader):
    eta = datetime.now(UTC) + timedelta(seconds=2)
    result = tasks.add.apply_async((1, 2), eta=eta, queue=celery_worker)
    reader = celery_reader.AsyncResult(result.id)
    assert reader.get(timeout=60) == 1003, celery_process.log()
    assert reader.date_done >= eta
