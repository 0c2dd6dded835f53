"""The database result backend on PostgreSQL: one statement per state, and NOTIFY wakes get()."""

from __future__ import annotations

import os
import threading

import psycopg
import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from djtasks import states
from djtasks.backends.base import ExecutionInfo, exception_to_dict
from djtasks.backends.database import NOTIFY_META_BYTES, DatabaseBackend
from djtasks.backends.listener import connection_params
from djtasks.models import TaskResult
from tests.integration.conftest import BROKERS, DATABASES, require_services, wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


@pytest.fixture
def backend():
    require_services(BROKERS[1])  # PostgreSQL
    backend = DatabaseBackend("postgres")
    yield backend
    backend.close()


def test_each_state_is_one_statement_that_upserts_and_notifies(backend):
    info = ExecutionInfo(task_name="t.add", worker="w1", queue="q", retries=2, root_id="r")
    with CaptureQueriesContext(connections["postgres"]) as queries:
        backend.store("id-1", states.STARTED, info=info)
    assert len(queries) == 1
    assert "pg_notify" in queries[0]["sql"]
    backend.store("id-1", states.SUCCESS, {"answer": 42}, info=info)
    row = TaskResult.objects.using("postgres").get(task_id="id-1")
    assert (row.status, row.result, row.worker, row.retries) == (states.SUCCESS, {"answer": 42}, "w1", 2)
    assert row.date_started is not None
    assert row.date_done is not None
    assert row.date_created <= row.date_started <= row.date_done


def test_failure_is_stored_and_read_back(backend):
    backend.store("id-2", states.FAILURE, exception_to_dict(ValueError("bad")), traceback="tb")
    meta = backend.get_meta("id-2")
    assert (meta.status, meta.traceback, meta.result["exc_type"]) == (states.FAILURE, "tb", "ValueError")


def wait_while_stored_elsewhere(backend, task_id, results):
    """Wait for ``task_id`` while another thread stores ``results`` ((id, value) pairs) 0.3 s
    later. A 60 s polling interval: only a NOTIFY can end the wait in time."""
    def store_elsewhere() -> None:
        try:
            elsewhere = DatabaseBackend("postgres")
            for stored_id, value in results:
                elsewhere.store(stored_id, states.SUCCESS, value)
        finally:
            connections["postgres"].close()  # this thread's own connection

    timer = threading.Timer(0.3, store_elsewhere)
    timer.start()
    try:
        return backend.wait(task_id, timeout=20, interval=60)
    finally:
        timer.join()


def test_wait_is_woken_by_the_notify(backend):
    meta = wait_while_stored_elsewhere(backend, "id-3", [("id-3", 7)])
    assert (meta.status, meta.result) == (states.SUCCESS, 7)


@pytest.fixture
def reads(backend, monkeypatch):
    """The task ids ``backend`` reads a row of."""
    seen = []
    get_meta = backend.get_meta
    monkeypatch.setattr(backend, "get_meta", lambda task_id: seen.append(task_id) or get_meta(task_id))
    return seen


def test_the_notify_carries_the_state_and_other_tasks_do_not_wake_the_waiter(backend, reads):
    # Other tasks' results NOTIFY on the same channel; each used to cost the waiter a read.
    others = [(f"other-{n}", n) for n in range(20)]
    meta = wait_while_stored_elsewhere(backend, "id-4", [*others, ("id-4", {"four": [4]})])
    assert reads == ["id-4"], "read once before the wait; the NOTIFY told the rest"
    assert meta == backend.get_meta("id-4"), "what the NOTIFY told is what the row holds"


def test_a_state_too_long_for_the_notify_is_read_from_the_row(backend, reads):
    long = "x" * (NOTIFY_META_BYTES + 1)
    meta = wait_while_stored_elsewhere(backend, "id-6", [("id-6", long)])
    assert meta.result == long
    assert reads == ["id-6", "id-6"], "the NOTIFY carried the id only: the row is read again"


def test_the_compiled_read_returns_what_the_orm_returns(backend):
    info = ExecutionInfo(task_name="t.add", worker="w1", queue="q", retries=1, parent_id="p",
                         root_id="r", group_id="g", children=("c1",), args=[1, {"x": "y"}],
                         kwargs={"k": None},
                         args_repr="(1,)", kwargs_repr="{}")
    backend.store("id-5", states.SUCCESS, {"nested": [1.5, "two", None]}, info=info)
    meta = backend.get_meta("id-5")
    row = TaskResult.objects.using("postgres").get(task_id="id-5")
    assert (meta.status, meta.result, meta.date_done, meta.children, meta.args, meta.kwargs) == (
        row.status, row.result, row.date_done, tuple(row.children), row.args, row.kwargs)
    assert meta.date_done.tzinfo is not None
    assert backend.get_meta("no-such-id").status == states.PENDING


def test_a_revoke_signals_workers_at_its_commit(backend):
    assert backend.revocations_changed() is True, "a new signal: what came before is unknown"
    assert backend.revocations_changed() is False
    elsewhere = DatabaseBackend("postgres")
    with transaction.atomic(using="postgres"):
        elsewhere.revoke(["r-1", "r-2"], None)
        assert backend.revocations_changed() is False, "not before the revoke commits"
    assert wait_until(lambda: backend.revocations_changed(), timeout=5)
    assert backend.revocations_changed() is False, "one signal per revoke"
    assert backend.revoked_since(None)[0] >= {"r-1", "r-2"}


# -- writes confirmed later (a solo worker's results) ---------------------------------------


def test_an_unconfirmed_write_is_committed_and_wakes_the_waiter(backend):
    writer = DatabaseBackend("postgres")
    try:
        writer.store("id-u1", states.SUCCESS, 1, confirm=False)
        assert writer.unconfirmed_writes
        meta = backend.wait("id-u1", timeout=10, interval=60)  # the NOTIFY, not the confirm
        assert (meta.status, meta.result) == (states.SUCCESS, 1)
        writer.store("id-u2", states.SUCCESS, 2, confirm=False)  # confirms id-u1 first
        writer.confirm_writes()
        assert not writer.unconfirmed_writes
        assert backend.get_meta("id-u2").result == 2
    finally:
        writer.close()


def test_a_process_killed_right_after_an_unconfirmed_write_loses_nothing(backend):
    pid = os.fork()
    if pid == 0:  # the child: store, then die at once, as kill -9 would have it
        try:
            connections["postgres"].connection = None  # the parent's socket is not ours
            DatabaseBackend("postgres").store("id-u3", states.SUCCESS, 3, confirm=False)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert wait_until(lambda: backend.get_meta("id-u3").status == states.SUCCESS, timeout=10)


def test_a_failed_unconfirmed_write_is_made_again_through_django(backend, caplog):
    backend.store("id-u4", states.STARTED)
    locker = psycopg.connect(**connection_params("postgres"))
    killer = psycopg.connect(**connection_params("postgres"), autocommit=True)
    writer = DatabaseBackend("postgres")
    try:
        locker.execute("SELECT 1 FROM djtasks_taskresult WHERE task_id = 'id-u4' FOR UPDATE")
        writer.store("id-u4", states.SUCCESS, 4, confirm=False)  # waits for the row lock
        writer_pid = writer._local.unconfirmed._conn.info.backend_pid
        waiting = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s"
        assert wait_until(lambda: killer.execute(waiting, [writer_pid]).fetchone()[0], timeout=10)
        killer.execute("SELECT pg_terminate_backend(%s)", [writer_pid])  # its statement never commits
        locker.commit()
        writer.confirm_writes()
    finally:
        writer.close()
        locker.close()
        killer.close()
    assert "Result of id-u4" in caplog.text
    assert "writing it again" in caplog.text
    assert (backend.get_meta("id-u4").status, backend.get_meta("id-u4").result) == (states.SUCCESS, 4)


def test_inside_a_transaction_a_write_is_confirmed_at_once(backend):
    with transaction.atomic(using="postgres"):
        backend.store("id-u5", states.SUCCESS, 5, confirm=False)
        assert not backend.unconfirmed_writes, "part of the caller's transaction, as before"
    assert backend.get_meta("id-u5").result == 5


def test_a_value_the_server_refuses_stores_the_failure_instead(backend, caplog):
    # PostgreSQL refuses a NUL in jsonb: the reply is an error, and so is the write again.
    writer = DatabaseBackend("postgres")
    try:
        writer.store("id-u6", states.SUCCESS, "a\x00b", confirm=False)
        writer.confirm_writes()
    finally:
        writer.close()
    meta = backend.get_meta("id-u6")
    assert meta.status == states.FAILURE
    assert meta.result["exc_message"] == [
        "the worker could not run or record the task: DataError: unsupported Unicode escape sequence"]
    assert "could not be stored" in caplog.text
