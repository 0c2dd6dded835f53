"""Celery's own clients read djtasks' events: ``celery events --dump`` and Flower.

Real processes on RabbitMQ and Redis: a djtasks worker with ``-E``, then Celery's dumper
or Flower (on a free loopback port) started by the test, read until they show the
worker's heartbeats and a task's events, then stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.conftest import DATABASES, ROOT, only_brokers, start_worker, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.integration, only_brokers("amqp", "redis"),
              pytest.mark.django_db(transaction=True, databases=DATABASES)]

FAST = {"DJTASKS_WORKER_HEARTBEAT_INTERVAL": "0.5"}


class Output:
    """A subprocess whose output lines are collected by a thread."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, *args], cwd=ROOT, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})}, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._reader.join(5)
        self.process.stdout.close()


@pytest.fixture(scope="module")
def hostname() -> str:
    return f"cli-{uuid.uuid4().hex[:6]}@localhost"


@pytest.fixture(scope="module")
def events_worker(broker, queue_name, hostname, django_db_setup) -> Iterator[object]:
    process = start_worker(broker, queue_name, "-c", "2", "-E", "-n", hostname, env=FAST)
    yield process
    process.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_celery_events_dump_shows_heartbeats_and_task_events(events_worker, broker, hostname,
                                                             app_settings):
    dump = Output("-m", "celery", "-b", broker.broker_url, "events", "--dump")
    try:
        wait_until(lambda: any(line.startswith(f"{hostname} [") and "] heartbeat" in line
                               and "sw_ident=djtasks" in line for line in list(dump.lines)),
                   timeout=30, interval=0.2, message="a djtasks heartbeat in celery's dump")
        result = tasks.add.delay(20, 22)
        assert result.get(timeout=20) == 42
        def task_lines() -> list[str]:
            return [line for line in list(dump.lines) if result.id in line]

        wait_until(lambda: any("succeeded" in line for line in task_lines()), timeout=20,
                   interval=0.2, message="the task's events in celery's dump")
        mine = task_lines()
        assert any("received" in line for line in mine), mine
        assert any("succeeded" in line for line in mine), mine
    finally:
        dump.stop()


@pytest.fixture
def flower(broker) -> Iterator[str]:
    """Flower on a free loopback port; yields its base URL."""
    port = free_port()
    process = Output("-m", "celery", "-b", broker.broker_url, "flower", f"--port={port}",
                     "--address=127.0.0.1", env={"FLOWER_UNAUTHENTICATED_API": "true"})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{base}/healthcheck"), timeout=30, interval=0.2,
                   message="flower up")
        yield base
    finally:
        process.stop()


def test_flower_lists_the_worker_online_and_its_tasks(events_worker, flower, hostname,
                                                      app_settings):
    # Flower's healthcheck answers before its event receiver listens, and events sent before
    # it listens are gone (Redis pub/sub keeps none): a warm-up task each poll until one
    # shows proves the receiver is up, so the task under test is seen from "received".
    warm_ups: list[str] = []

    def receiver_up() -> bool:
        warm_ups.append(tasks.add.delay(0, 0).id)
        listed = get_json(f"{flower}/api/tasks") or {}
        return any(task_id in listed for task_id in warm_ups)

    wait_until(receiver_up, timeout=30, interval=0.5, message="flower's event receiver up")
    result = tasks.add.delay(5, 6)
    assert result.get(timeout=20) == 11

    def task_seen() -> dict | None:
        found = get_json(f"{flower}/api/tasks")
        entry = found.get(result.id) if isinstance(found, dict) else None
        return entry if entry and entry.get("state") == "SUCCESS" else None

    entry = wait_until(task_seen, timeout=30, interval=0.3, message="the task in /api/tasks")
    assert entry["name"] == "tests.testapp.tasks.add"
    assert entry["worker"] == hostname
    assert entry["result"] == "11"
    wait_until(lambda: _worker_listed(f"{flower}/api/workers?refresh=1", hostname), timeout=20,
               interval=0.5, message="the worker in /api/workers")
    # status=true: Flower pings each worker.
    assert get_json(f"{flower}/api/workers?status=true").get(hostname) is True


def test_flower_shows_the_worker_details(events_worker, flower, hostname, queue_name,
                                         app_settings):
    workers = wait_until(lambda: _worker_listed(f"{flower}/api/workers?refresh=1", hostname),
                         timeout=20, interval=0.5, message="the worker in /api/workers")
    details = workers[hostname]
    assert "error" not in details["stats"]
    assert details["stats"]["pool"]["max-concurrency"] == 2
    assert queue_name in [queue["name"] for queue in details["active_queues"]]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _worker_listed(url: str, hostname: str) -> dict | None:
    found = get_json(url)
    return found if isinstance(found, dict) and hostname in found else None
