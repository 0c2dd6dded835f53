"""Event layout, the worker's drop-and-count sender, Worker rows and task timings (no processes)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import kombu
import pytest

from djtasks import conf, states
from djtasks.application import App
from djtasks.backends.base import ExecutionInfo
from djtasks.backends.database import DatabaseBackend
from djtasks.models import TaskResult, Worker
from djtasks.models.workers import LOST, OFFLINE, ONLINE, lost_after
from djtasks.publish import EventDispatcher
from djtasks.utils import events
from djtasks.worker.events import EventSender, TaskEvents
from djtasks.worker.heartbeat import Heartbeat, WorkerInfo, WorkerStats
from djtasks.worker.housekeeping import forget_workers
from djtasks.worker.worker import log_thread_stacks

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def listen(connection: kombu.Connection) -> kombu.SimpleQueue:
    """A queue bound to every event, as ``celery events`` binds one."""
    exchange = events.event_exchange(connection.transport.driver_type)
    return connection.SimpleQueue(kombu.Queue("ev-test", exchange, routing_key="#"))


def test_an_event_has_celerys_fields_and_routing_key():
    event = events.build_event("task-succeeded", hostname="w@h", clock=7, pid=12, timestamp=1.5,
                               uuid="id", result="3", runtime=0.25)
    assert event == {"type": "task-succeeded", "hostname": "w@h", "timestamp": 1.5, "pid": 12,
                     "clock": 7, "utcoffset": events.utcoffset(1.5), "uuid": "id", "result": "3",
                     "runtime": 0.25}
    assert events.routing_key("worker-heartbeat") == "worker.heartbeat"
    assert events.event_exchange("amqp").type == "topic"
    assert events.event_exchange("redis").type == "fanout"
    assert events.software_info("1.0")["sw_ident"] == "djtasks"


def test_the_dispatcher_publishes_with_a_forward_clock_and_the_hostname_header():
    with kombu.Connection("memory://") as connection:
        queue = listen(connection)
        dispatcher = EventDispatcher(connection, "w@h", events.LamportClock())
        dispatcher.send("worker-heartbeat", freq=2.0)
        dispatcher.send("worker-heartbeat", freq=2.0)
        first, second = queue.get(timeout=1), queue.get(timeout=1)
        assert first.headers["hostname"] == "w@h"
        assert first.delivery_info["routing_key"] == "worker.heartbeat"
        assert (first.payload["clock"], second.payload["clock"]) == (1, 2)
        queue.close()


def test_a_full_buffer_drops_and_counts_without_blocking():
    sender = EventSender(lambda: kombu.Connection("memory://"), "w@h", buffer=2,
                         task_events=True)
    started = time.monotonic()
    for _ in range(5):
        sender.emit("task-started", uuid="x")  # the thread is not started: nothing drains
    assert time.monotonic() - started < 0.5
    assert sender.dropped == 3


def test_the_sender_thread_delivers_and_survives_a_broken_broker():
    calls = []

    def new_connection() -> kombu.Connection:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("broker down")
        return kombu.Connection("memory://")

    with kombu.Connection("memory://") as connection:
        queue = listen(connection)
        sender = EventSender(new_connection, "w@h", task_events=True)
        sender.start()
        sender.emit("task-started", uuid="lost")   # dropped: the first connection fails
        sender.emit("task-started", uuid="kept")
        body = queue.get(timeout=5).payload
        sender.stop()
        queue.close()
    assert body["uuid"] == "kept"
    assert (sender.dropped, sender.sent) == (1, 1)


def test_events_of_a_group_that_is_off_are_not_even_built():
    sender = EventSender(lambda: kombu.Connection("memory://"), "w@h", task_events=False,
                         worker_events=False)
    TaskEvents(sender).started(type("J", (), {"message": type("M", (), {"id": "x"})})())
    sender.emit("worker-heartbeat")
    assert sender.clock.value == 0
    assert sender._queue.qsize() == 0


def test_the_worker_row_is_online_then_lost_or_offline():
    stats = WorkerStats(processed=3, failed=1, active=2)
    sender = EventSender(lambda: kombu.Connection("memory://"), "w@h", worker_events=False)
    beat = Heartbeat(WorkerInfo("w@h", "prefork", 4, ["celery"]), sender, stats, interval=2.0)
    assert beat.report(ONLINE, now=NOW)
    row = Worker.objects.with_status(NOW + timedelta(seconds=5)).get()
    assert (row.status, row.processed, row.failed, row.active) == (ONLINE, 3, 1, 2)
    assert Worker.objects.with_status(NOW + timedelta(seconds=7)).get().status == LOST
    assert row.status_at(NOW + timedelta(seconds=7)) == LOST
    started = row.started
    assert beat.report(OFFLINE, now=NOW + timedelta(seconds=1))
    row = Worker.objects.with_status(NOW + timedelta(days=1)).get()
    assert row.status == OFFLINE
    assert row.started == started  # kept by later reports of the same run
    assert row.lost_after == lost_after(NOW + timedelta(seconds=1), 2.0)


def test_cleanup_forgets_workers_not_heard_of_for_worker_forget_after():
    for name, when in (("old@h", NOW - timedelta(days=2)), ("new@h", NOW)):
        Worker.objects.create(hostname=name, started=when, last_heartbeat=when,
                              lost_after=lost_after(when, 2.0))
    assert forget_workers(NOW - timedelta(days=1)) == 1
    assert list(Worker.objects.values_list("hostname", flat=True)) == ["new@h"]


def test_timings_travel_in_the_result_upsert():
    received, started = NOW, NOW + timedelta(seconds=1)
    DatabaseBackend("default").store("t1", states.SUCCESS, 3, info=ExecutionInfo(
        task_name="t", received=received, started=started, runtime=0.5))
    row = TaskResult.objects.get(task_id="t1")
    assert (row.date_received, row.date_started, row.runtime) == (received, started, 0.5)


def test_task_sent_events_with_task_send_sent_event():
    app = App(conf.load({"broker_url": "memory://", "task_default_queue": "unit-sent",
                         "task_send_sent_event": True}, {}))
    try:
        with kombu.Connection("memory://") as connection:
            queue = listen(connection)
            result = app.send_task("some.task", (1, 2))
            event = queue.get(timeout=1).payload
            queue.close()
    finally:
        app.close()
    assert event["type"] == "task-sent"
    assert (event["uuid"], event["name"], event["queue"]) == (result.id, "some.task", "unit-sent")


def test_sigusr1_logs_the_stack_of_every_thread(caplog):
    parked = threading.Event()
    thread = threading.Thread(target=parked.wait, name="parked-thread", daemon=True)
    thread.start()
    previous = signal.signal(signal.SIGUSR1, log_thread_stacks)
    try:
        with caplog.at_level(logging.WARNING, logger="djtasks.worker"):
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0)  # the handler runs in the main thread at the next bytecode
    finally:
        signal.signal(signal.SIGUSR1, previous)
        parked.set()
    assert "parked-thread" in caplog.text
    assert "test_sigusr1_logs_the_stack_of_every_thread" in caplog.text


def test_each_end_of_a_run_is_its_celery_task_event():
    sender = EventSender(lambda: kombu.Connection("memory://"), "w@h", task_events=True)
    task_events = TaskEvents(sender)
    job = type("J", (), {"message": type("M", (), {"id": "t"})})()
    task_events.finished(job, states.SUCCESS, 0.5, "3")
    task_events.finished(job, states.FAILURE, 0.5, "ValueError('x')", "Traceback ...")
    task_events.finished(job, states.RETRY, 0.5, "Retry in 1s")
    task_events.finished(job, states.REJECTED, 0.5, "no", requeue=True)
    task_events.finished(job, states.IGNORED, 0.5, "ignored")  # Celery sends none either
    task_events.revoked("t", terminated=True, signum=9)
    sent = [sender._queue.get_nowait() for _ in range(sender._queue.qsize())]
    assert [(e["type"], e["clock"]) for e in sent] == [
        ("task-succeeded", 1), ("task-failed", 2), ("task-retried", 3), ("task-rejected", 4),
        ("task-revoked", 5)]
    assert sent[0]["result"] == "3"
    assert sent[1]["traceback"] == "Traceback ..."
    assert sent[3]["requeue"] is True
    assert (sent[4]["terminated"], sent[4]["signum"]) == (True, 9)
