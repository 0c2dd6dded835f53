"""PostgreSQL goes away under a running worker and beat: both live, nothing lost or doubled.

The worker's and beat's connections to PostgreSQL go through a TCP proxy the test starts
(tests/integration/tcp_proxy.py); cutting it is what a PostgreSQL restart does to them:
every connection drops, and new ones are refused until it is back. The test process
itself talks to PostgreSQL directly, so it keeps sending tasks during the outage.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import djtasks
from djtasks import states
from tests.integration.beat_runs import add_entry, each_run_sent_once, runs
from tests.integration.conftest import DATABASES, only_brokers, wait_until
from tests.integration.tcp_proxy import TcpProxy
from tests.settings import POSTGRES_URL
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES),
              only_brokers("django-postgres", "amqp")]

POSTGRES_PORT = urlsplit(POSTGRES_URL).port or 5432
OUTAGE = 5.0  # seconds; a PostgreSQL restart takes one to a few
PER_PHASE = 20


@pytest.fixture
def proxy():
    proxy = TcpProxy(POSTGRES_PORT).start()
    yield proxy
    proxy.close()


def through(proxy: TcpProxy, broker) -> dict[str, str]:
    """The environment of a process whose PostgreSQL connections go through ``proxy``."""
    proxied = POSTGRES_URL.replace(f":{POSTGRES_PORT}/", f":{proxy.port}/")
    assert proxied != POSTGRES_URL
    return {"DJTASKS_TESTS_POSTGRES_URL": proxied, "DJTASKS_TESTS_MODELS_DB": broker.database,
            "DJTASKS_BEAT_MAX_LOOP_INTERVAL": "1", "DJTASKS_BEAT_LEASE_TIMEOUT": "3",
            # A message whose lease the outage interrupted comes back within seconds.
            "DJTASKS_BROKER_TRANSPORT_OPTIONS": '{"visibility_timeout": 10}'}


def send(path: Path, phase: str) -> list:
    return [tasks.record.delay(str(path), f"{phase}-{n}") for n in range(PER_PHASE)]


def test_worker_and_beat_live_through_a_postgresql_outage(process_factory, proxy, broker,
                                                          queue_name, app_settings, tmp_path):
    executions, stamps = tmp_path / "executions.txt", tmp_path / "stamps.txt"
    add_entry(broker, queue_name, stamps)
    env = through(proxy, broker)
    worker = process_factory("runworker", "-c", "2", env=env, ready=r" ready\.$")
    beat = process_factory("runbeat", env=env, ready=r"is the leader")
    results = send(executions, "before")
    for result in results:
        assert result.get(timeout=30) is not None
    wait_until(lambda: len(runs(stamps)) >= 2, timeout=20, message="beat's first runs")

    proxy.cut()
    cut_at = time.monotonic()
    results += send(executions, "during")
    worker.wait_for_line(r"database error", timeout=20)
    beat.wait_for_line(r"database error", timeout=20)
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - cut_at)))  # the outage lasts OUTAGE s
    proxy.restore()
    results += send(executions, "after")

    for result in results:
        result.get(timeout=60)
        assert result.state == states.SUCCESS
    tokens = executions.read_text().split()
    assert sorted(tokens) == sorted(r.result for r in results), "a task ran twice or not at all"
    beat.wait_for_line(r"database reachable again", timeout=30)
    count = len(runs(stamps))
    wait_until(lambda: len(runs(stamps)) >= count + 2, timeout=20, message="beat sends again")
    for process in (worker, beat):
        assert process.process.poll() is None, "it died in the outage:\n" + process.log()
    assert beat.stop() == 0
    each_run_sent_once(stamps, beat)
    assert worker.stop() == 0
    assert not [line for line in worker.lines + beat.lines if "Traceback" in line]
    assert djtasks.app.AsyncResult(results[-1].id).state == states.SUCCESS
