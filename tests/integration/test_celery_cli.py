"""The real ``celery`` command line against djtasks workers, on RabbitMQ and Redis.

celery's CLI speaks kombu's mailbox as djtasks does, so ``celery inspect`` and ``celery
control`` reach djtasks workers unchanged. (It has no ``django://`` transport.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.conftest import ROOT, WorkerProcess, only_brokers, start_worker
from tests.testapp import tasks

#: A mailbox of this module's own: a worker of another run on the shared broker never
#: answers in place of this module's worker.
EXCHANGE = "djtasks-celery-cli-tests"

pytestmark = [pytest.mark.integration, only_brokers("amqp", "redis"),
              pytest.mark.django_db(transaction=True, databases=["default", "postgres"])]


@pytest.fixture(scope="module")
def name() -> str:
    return f"cli-{uuid.uuid4().hex[:6]}@localhost"


@pytest.fixture(scope="module")
def worker(broker, queue_name, name, django_db_setup) -> Iterator[WorkerProcess]:
    process = start_worker(broker, queue_name, "-c", "2", "-n", name,
                           env={"DJTASKS_CONTROL_EXCHANGE": EXCHANGE})
    yield process
    process.stop()


def celery(broker, *args: str) -> subprocess.Popen:
    """Start ``celery -b <url> <args>``: no app of its own, only the broker and the mailbox."""
    return subprocess.Popen([sys.executable, "-m", "celery", "-b", broker.broker_url,
                             "--config", "tests.integration.celery_cli_config", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, f"{process.args}: {err}{out}"
    return process.returncode, out


def test_celery_inspect_status_and_control_are_answered(worker, name, broker, queue_name,
                                                        app_settings):
    where = ["-d", name, "--timeout", "10"]
    extra = f"{queue_name}-extra"
    # Started together: each waits for the broker, not for the others.
    started = {
        "ping": celery(broker, "inspect", "ping", *where),
        "stats": celery(broker, "inspect", "stats", "--json", *where),
        "active_queues": celery(broker, "inspect", "active_queues", "--json", *where),
        "registered": celery(broker, "inspect", "registered", *where),
        "active": celery(broker, "inspect", "active", "--json", *where),
        "scheduled": celery(broker, "inspect", "scheduled", "--json", *where),
        "status": celery(broker, "status", *where),
        "add_consumer": celery(broker, "control", "add_consumer", extra, *where),
    }
    out = {command: finish(process)[1] for command, process in started.items()}

    assert f"{name}: OK" in out["ping"]
    assert "pong" in out["ping"]
    stats = json.loads(out["stats"]).get(name)
    assert stats, out["stats"]
    assert stats["pool"]["max-concurrency"] == 2
    assert len(stats["pool"]["processes"]) == 2
    assert "password" not in stats["broker"]
    queues = json.loads(out["active_queues"])[name]
    assert queue_name in [queue["name"] for queue in queues]
    assert "* tests.testapp.tasks.add" in out["registered"]
    assert "* tests.testapp.tasks.clock_in_limited [rate_limit=2/s]" in out["registered"]
    assert json.loads(out["active"]) == {name: []}
    assert json.loads(out["scheduled"]) == {name: []}
    assert f"{name}: OK" in out["status"]
    assert "1 node online." in out["status"]
    assert f"{name}: OK" in out["add_consumer"]
    assert f"add consumer {extra}" in out["add_consumer"]

    # celery's add_consumer took effect: the worker now runs that queue's tasks.
    assert tasks.whoami.apply_async(queue=extra).get(timeout=30)["hostname"] == name


def test_celery_reports_no_answer_from_an_unknown_worker(worker, broker):
    process = celery(broker, "inspect", "ping", "-d", "nobody@nowhere", "--timeout", "0.5")
    out, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "No nodes replied" in out + err
