"""Routing rules change live: a producer, workers and beat follow an ORM edit within the refresh.

Over every broker: a producer process keeps sending while the test creates a RoutingRule
and later disables it with ``QuerySet.update()``; every task sent more than one refresh
interval after a change runs where the change says. A chain step sent by a worker and a
task sent by beat follow a rule too.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from django.db import connections, transaction

from djtasks import App, conf, states
from djtasks.models import IntervalSchedule, PeriodicTask, RoutingRule, TaskResult, Worker
from tests.integration.conftest import (
    BROKERS,
    DATABASES,
    rebind_mailboxes,
    require_services,
    start_command,
    start_worker,
    wait_until,
)
from tests.testapp.tasks import add, mul

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]

REFRESH = 0.5
#: Beyond the refresh: the producer's pause between sends, and the commit reaching it.
SLACK = 0.3
ADD = "tests.testapp.tasks.add"


@pytest.fixture(scope="module")
def env(broker) -> dict[str, str]:
    return {"DJTASKS_TESTS_MODELS_DB": broker.database,
            "DJTASKS_ROUTING_RULES_REFRESH": str(REFRESH),
            "DJTASKS_BEAT_MAX_LOOP_INTERVAL": "1"}


@pytest.fixture(scope="module")
def hipri(queue_name) -> str:
    return f"{queue_name}-hipri"


@pytest.fixture(scope="module")
def workers(broker, queue_name, hipri, env, django_db_setup):
    """Two workers: ``main@`` on the module's default queue, ``hipri@`` on its hipri queue."""
    tag = uuid.uuid4().hex[:6]
    started = [start_worker(broker, queue_name, "-Q", queue, "-n", f"{name}-{tag}@it", "-c", "2",
                            "-P", "threads", env=env, wait=False)
               for name, queue in (("main", queue_name), ("hipri", hipri))]
    for process in started:
        process.wait_for_line(r" ready\.$")
    yield {"main": f"main-{tag}@it", "hipri": f"hipri-{tag}@it"}
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def producer(broker, queue_name, env, workers):
    process = start_command("produce", broker, queue_name, env=env, ready="producer ready")
    yield process
    process.stop()


def sent_after(producer, since: float) -> list[str]:
    """Ids of the tasks the producer sent after ``since`` (its clock: the same machine's)."""
    found = []
    for line in list(producer.lines):
        match = re.match(r"sent (\S+) (\S+)$", line)
        if match and float(match.group(1)) > since:
            found.append(match.group(2))
    return found


def ran_on(broker, task_ids: list[str]) -> dict[str, str]:
    rows = TaskResult.objects.using(broker.database).filter(task_id__in=task_ids, status=states.SUCCESS)
    return dict(rows.values_list("task_id", "worker"))


def wait_for_runs(broker, producer, since: float, count: int = 5) -> dict[str, str]:
    """Wait until ``count`` tasks sent after ``since`` ran; return where every finished one ran."""
    def finished():
        ids = sent_after(producer, since)
        done = ran_on(broker, ids)
        return done if len(done) >= count else None
    return wait_until(finished, timeout=30, message=f"{count} tasks sent after the change ran")


def now(producer) -> float:
    """The time of the producer's latest send: every send after it comes after this moment."""
    return float(re.match(r"sent (\S+)", next(
        line for line in reversed(producer.lines) if line.startswith("sent "))).group(1))


def test_producer_follows_a_created_rule_and_a_disable_by_update(broker, workers, producer, hipri):
    wait_for_runs(broker, producer, 0, count=3)
    rules = RoutingRule.objects.using(broker.database)
    rules.create(name="adds to hipri", pattern="tests.testapp.tasks.a*", queue=hipri, order=1)
    changed = now(producer)
    moved = wait_for_runs(broker, producer, changed + REFRESH + SLACK)
    assert set(moved.values()) == {workers["hipri"]}, moved

    rules.filter(name="adds to hipri").update(enabled=False)
    changed = now(producer)
    back = wait_for_runs(broker, producer, changed + REFRESH + SLACK)
    assert set(back.values()) == {workers["main"]}, back


def test_a_chain_step_sent_by_the_worker_follows_a_rule(broker, queue_name, hipri, workers, env,
                                                       app_settings, monkeypatch):
    monkeypatch.setenv("DJTASKS_TESTS_MODELS_DB", broker.database)
    RoutingRule.objects.using(broker.database).create(
        name="mul to hipri", pattern=r"\.mul$", match="regex", queue=hipri)
    # What is tested is the promise itself: after one refresh interval every process routes
    # by the new rule. The worker's cache shows nothing to wait on, so wait out the interval.
    time.sleep(REFRESH)
    result = (add.s(1, 1) | mul.s(5)).apply_async()
    assert result.get(timeout=30) == 10
    result.parent.get(timeout=30)  # stored just after mul was sent (as in Celery): may be later
    rows = dict(TaskResult.objects.using(broker.database).filter(
        task_id__in=[result.id, result.parent.id]).values_list("task_name", "worker"))
    assert rows == {ADD: workers["main"], "tests.testapp.tasks.mul": workers["hipri"]}


def test_beat_sends_by_the_rules_unless_the_entry_names_a_queue(broker, queue_name, hipri, workers,
                                                               env):
    db = broker.database
    RoutingRule.objects.using(db).create(name="identity to hipri", pattern="*.identity", queue=hipri)
    every_second, _ = IntervalSchedule.objects.using(db).get_or_create(every=1, period="seconds")
    task = "tests.testapp.tasks.identity"
    PeriodicTask.objects.using(db).create(name="ruled", task=task, args=["ruled"], interval=every_second)
    PeriodicTask.objects.using(db).create(name="own queue", task=task, args=["own"], queue=queue_name,
                                          interval=every_second)
    beat = start_command("runbeat", broker, queue_name, env=env, ready=r"beat: Starting")
    try:
        def runs():
            rows = TaskResult.objects.using(db).filter(task_name=task, status=states.SUCCESS)
            found = list(rows.values_list("result", "worker"))
            return found if {"ruled", "own"} <= {value for value, _ in found} else None
        found = wait_until(runs, timeout=30, message="both periodic tasks ran")
    finally:
        beat.stop()
    assert {worker for value, worker in found if value == "ruled"} == {workers["hipri"]}
    assert {worker for value, worker in found if value == "own"} == {workers["main"]}


def test_a_failed_read_inside_a_postgres_transaction_leaves_it_usable(monkeypatch, caplog):
    require_services(BROKERS[1])
    monkeypatch.setenv("DJTASKS_TESTS_MODELS_DB", "postgres")
    app = App(conf.load({"broker_url": "memory://"}, {}))
    try:
        with transaction.atomic(using="postgres"):
            with connections["postgres"].cursor() as cursor:  # the table vanishes, for a while
                cursor.execute("ALTER TABLE djtasks_routingrule RENAME TO djtasks_routingrule_away")
            assert app.route("a.task", (), {}, {}).queue.name == "celery"
            with connections["postgres"].cursor() as cursor:  # the caller's transaction still works
                cursor.execute("SELECT 1")
                assert cursor.fetchone() == (1,)
            transaction.set_rollback(True, using="postgres")
    finally:
        app.close()
    assert "routing rules: cannot read them (ProgrammingError" in caplog.text


def test_the_admin_says_when_no_running_worker_consumes_the_queue(broker, hipri, workers,
                                                                 app_settings, admin_client,
                                                                 monkeypatch):
    monkeypatch.setenv("DJTASKS_TESTS_MODELS_DB", broker.database)
    rebind_mailboxes(broker, list(workers.values()))
    # The tables were emptied after the last test; the workers' next heartbeats write them again.
    wait_until(lambda: set(workers.values()) <= set(
        Worker.objects.using(broker.database).values_list("hostname", flat=True)),
        message="both workers' heartbeat rows")

    def add_rule(name: str, queue: str) -> list[str]:
        response = admin_client.post("/admin/djtasks/routingrule/add/", {
            "name": name, "pattern": f"{name}.*", "match": "glob", "order": "0", "enabled": "on",
            "queue": queue}, follow=True)
        assert RoutingRule.objects.using(broker.database).filter(name=name).exists()
        return [str(message) for message in response.context["messages"]]

    nobody = f"nobody-{uuid.uuid4().hex[:6]}"
    [warning] = [m for m in add_rule("unconsumed", nobody) if "No running worker" in m]
    assert f"queue {nobody!r}" in warning
    assert not [m for m in add_rule("consumed", hipri) if "No running worker" in m]
