"""Events, heartbeats and the Worker row, with real workers over every broker.

One prefork worker with ``-E`` and a 0.5 s heartbeat per broker. The test process listens
on the ``celeryev`` exchange with a queue of its own, as ``celery events`` does. Other
test runs may share RabbitMQ and Redis, so every assertion looks at this module's worker
(by hostname) and this test's task ids only.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import kombu
import pytest
from django.db import connections

import djtasks
from djtasks.models import TaskResult, Worker
from djtasks.models.workers import LOST, OFFLINE, ONLINE
from djtasks.worker.monitor import event_queue
from tests.integration.conftest import DATABASES, run_command, start_worker, wait_until
from tests.integration.test_control import rebind_mailboxes
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]

INTERVAL = "0.5"
FAST = {"DJTASKS_WORKER_HEARTBEAT_INTERVAL": INTERVAL}


class EventListener:
    """Collect every event from the broker in a thread (a queue bound to celeryev)."""

    def __init__(self, url: str) -> None:
        self.events: list[dict] = []
        self.connection = kombu.Connection(url)
        self.queue = event_queue(self.connection)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(20), "event listener did not start"

    def _run(self) -> None:
        try:
            with kombu.Consumer(self.connection.default_channel, queues=[self.queue],
                                accept=["json"], no_ack=True,
                                callbacks=[lambda body, _m: self.events.append(body)]):
                self._ready.set()
                while not self._stop.is_set():
                    try:
                        self.connection.drain_events(timeout=0.2)
                    except TimeoutError:
                        pass
        finally:
            connections.close_all()  # django://: this thread's own database connections

    def of(self, event_type: str, **match: object) -> list[dict]:
        return [e for e in list(self.events) if e.get("type") == event_type
                and all(e.get(key) == value for key, value in match.items())]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        try:
            self.queue(self.connection.default_channel).delete()
        except Exception:  # auto-deleted already
            pass
        self.connection.release()


@pytest.fixture(scope="module")
def hostname() -> str:
    return f"ev-{uuid.uuid4().hex[:6]}@localhost"


@pytest.fixture
def listener(broker, app_settings) -> Iterator[EventListener]:
    """Listening for one test (on django:// each test starts with empty binding tables)."""
    listening = EventListener(broker.broker_url)
    yield listening
    listening.close()


@pytest.fixture(scope="module")
def events_worker(broker, queue_name, hostname, django_db_setup):
    process = start_worker(broker, queue_name, "-c", "2", "-E", "-n", hostname, env=FAST)
    yield process
    process.stop()


def rows(hostname: str) -> list[Worker]:
    return list(Worker.objects.using("default").with_status().filter(hostname=hostname)) + \
        list(Worker.objects.using("postgres").with_status().filter(hostname=hostname))


def test_heartbeats_and_task_events(events_worker, listener, hostname, app_settings):
    ok, bad = tasks.add.delay(2, 3), tasks.fail.delay("no")
    assert ok.get(timeout=20) == 5
    with pytest.raises(Exception, match="no"):
        bad.get(timeout=20)
    wait_until(lambda: listener.of("task-succeeded", uuid=ok.id)
               and listener.of("task-failed", uuid=bad.id), message="task end events")
    wait_until(lambda: listener.of("worker-heartbeat", hostname=hostname), timeout=10,
               message="a heartbeat")
    beat = listener.of("worker-heartbeat", hostname=hostname)[-1]
    assert beat["freq"] == float(INTERVAL)
    assert beat["sw_ident"] == "djtasks"
    assert {"active", "processed", "loadavg", "sw_ver", "sw_sys", "timestamp", "utcoffset",
            "pid", "clock"} <= set(beat)
    for kind in ("task-received", "task-started", "task-succeeded"):
        assert listener.of(kind, uuid=ok.id, hostname=hostname), kind
    received = listener.of("task-received", uuid=ok.id)[0]
    assert received["name"] == "tests.testapp.tasks.add"
    assert received["args"] == "(2, 3)"
    succeeded = listener.of("task-succeeded", uuid=ok.id)[0]
    assert succeeded["result"] == "5"
    assert succeeded["runtime"] >= 0
    failed = listener.of("task-failed", uuid=bad.id)[0]
    assert "no" in failed["exception"]
    assert "Traceback" in failed["traceback"]
    # The worker's Lamport clock moves forward with every event it sends: no two alike, and
    # in order from each process (consuming children each send from a buffer of their own).
    mine = [(e["pid"], e["clock"]) for e in listener.events if e.get("hostname") == hostname]
    assert len({clock for _pid, clock in mine}) == len(mine)
    for pid in {pid for pid, _clock in mine}:
        clocks = [clock for sender, clock in mine if sender == pid]
        assert clocks == sorted(clocks), pid


def test_worker_row_counts_and_result_timings(events_worker, hostname, app_settings, broker):
    result = tasks.add.delay(1, 1)
    assert result.get(timeout=20) == 2

    def counted() -> Worker | None:
        found = rows(hostname)
        return found[0] if found and found[0].processed >= 1 else None

    row = wait_until(counted, timeout=10, message="the Worker row")
    assert row.status == ONLINE
    assert (row.pool, row.concurrency, row.heartbeat_interval) == ("prefork", 2, float(INTERVAL))
    assert row.software.startswith("djtasks ")
    stored = TaskResult.objects.using(broker.database).get(task_id=result.id)
    assert stored.date_received is not None
    assert stored.date_started is not None
    assert stored.date_received <= stored.date_started <= stored.date_done
    assert stored.runtime is not None
    assert 0 <= stored.runtime < 5


def test_enable_disable_events_and_heartbeat(events_worker, listener, hostname, app_settings,
                                             broker):
    rebind_mailboxes(broker, [hostname])
    control = djtasks.app.control
    assert control.broadcast("disable_events", destination=[hostname], reply=True, timeout=5) == \
        [{hostname: {"ok": "task events disabled"}}]
    quiet = tasks.add.delay(3, 3)
    assert quiet.get(timeout=20) == 6
    assert control.broadcast("enable_events", destination=[hostname], reply=True, timeout=5) == \
        [{hostname: {"ok": "task events enabled"}}]
    loud = tasks.add.delay(4, 4)
    assert loud.get(timeout=20) == 8
    wait_until(lambda: listener.of("task-succeeded", uuid=loud.id), message="events back on")
    assert not listener.of("task-received", uuid=quiet.id)
    assert control.broadcast("enable_events", destination=[hostname], reply=True, timeout=5) == \
        [{hostname: {"ok": "task events already enabled"}}]
    assert control.broadcast("heartbeat", destination=[hostname], reply=True, timeout=5) == \
        [{hostname: None}]


def test_killed_worker_reads_lost_and_stopped_one_offline(worker_factory, listener, broker,
                                                          app_settings):
    tag = uuid.uuid4().hex[:6]
    killed, stopped = f"kill-{tag}@localhost", f"stop-{tag}@localhost"
    doomed = worker_factory("-c", "1", "-P", "solo", "-n", killed, env=FAST)
    polite = worker_factory("-c", "1", "-P", "solo", "-n", stopped, env=FAST)
    wait_until(lambda: len(rows(killed)) == 1 and len(rows(stopped)) == 1, timeout=10,
               message="both rows")
    doomed.kill_group()
    assert polite.stop() == 0
    wait_until(lambda: rows(killed)[0].status == LOST, timeout=10, message="lost")
    assert rows(stopped)[0].status == OFFLINE
    assert listener.of("worker-online", hostname=stopped)
    assert listener.of("worker-offline", hostname=stopped)
    output = run_command(broker, "unused", "djtasks", "status", "--all").stdout
    assert f"{killed}: lost" in output
    assert f"{stopped}: offline" in output


def test_a_solo_worker_sends_task_started_while_the_task_runs(worker_factory, listener, queue_name,
                                                              app_settings):
    # The solo pool (as each consuming child) runs a task inside the call that starts it:
    # task-started must still go out as the task begins, not once it is over.
    own = f"{queue_name}-solo"
    worker_factory("-P", "solo", "-E", "-Q", own, "-n", f"solo-{uuid.uuid4().hex[:6]}@localhost",
                   env=FAST)
    running = tasks.nap.apply_async((2,), queue=own)
    wait_until(lambda: listener.of("task-started", uuid=running.id), message="task-started")
    assert not running.ready()
    assert running.get(timeout=30) == 2


def test_djtasks_events_dump_prints_the_heartbeats(events_worker, broker, hostname, app_settings):
    output = run_command(broker, "unused", "djtasks", "events", "--dump", "--timeout", "2.5").stdout
    beats = [line for line in output.splitlines()
             if f"[{hostname}] worker-heartbeat" in line and "sw_ident='djtasks'" in line]
    assert len(beats) >= 2, output
