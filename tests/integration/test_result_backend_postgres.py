"""The database result backend on PostgreSQL: one statement per state, and NOTIFY wakes get()."""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from djtasks import states
from djtasks.backends.base import ExecutionInfo, exception_to_dict
from djtasks.backends.database import DatabaseBackend
from djtasks.models import TaskResult
from tests.integration.conftest import BROKERS, DATABASES, require_services

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


def test_wait_is_woken_by_the_notify(backend):
    # A 60 s polling interval: only the NOTIFY can end the wait in time.
    def finish_elsewhere() -> None:
        try:
            DatabaseBackend("postgres").store("id-3", states.SUCCESS, 7)
        finally:
            connections["postgres"].close()  # this thread's own connection

    timer = threading.Timer(0.3, finish_elsewhere)
    timer.start()
    try:
        meta = backend.wait("id-3", timeout=20, interval=60)
    finally:
        timer.join()
    assert (meta.status, meta.result) == (states.SUCCESS, 7)
