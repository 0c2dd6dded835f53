"""Task execution on real workers over every broker: the request, retries, Reject and Ignore,
progress, handlers, the Request class, signals and the task logger (issue 4, exec)."""

from __future__ import annotations

import json
from pathlib import Path

import kombu
import pytest

import djtasks
from djtasks import states
from djtasks.exceptions import MaxRetriesExceededError
from tests.integration.conftest import DATABASES, start_worker, wait_until
from tests.testapp import execution

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory, broker) -> Path:
    # One per broker: each broker's worker fires its own worker signals.
    return tmp_path_factory.mktemp(f"execution-{broker.name}") / "events.jsonl"


@pytest.fixture(scope="module")
def worker(broker, queue_name, django_db_setup, events_file):
    """One prefork worker per broker whose signal receivers and handlers write events_file."""
    process = start_worker(broker, queue_name, "-c", "2",
                           env={"DJTASKS_TEST_EVENTS": str(events_file)})
    yield process
    process.stop()


def events(path: Path, task_id: str | None = None) -> list[dict]:
    if not path.exists():
        return []
    found = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [e for e in found if task_id is None or e.get("task_id") == task_id]


def names(path: Path, task_id: str) -> list[str]:
    return [e["event"] for e in events(path, task_id)]


# -- the request --------------------------------------------------------------------------------
def test_a_bound_task_sees_every_request_field(worker, app_settings, queue_name):
    result = execution.request_fields.apply_async((1, 2), {"k": "v"}, headers={"h": "x"},
                                                  expires=600, soft_time_limit=50, time_limit=60)
    fields = result.get(timeout=30)
    assert set(fields) == set(execution.REQUEST_FIELDS)
    assert fields["id"] == result.id
    assert fields["task"] == execution.request_fields.name
    assert fields["args"] == [1, 2]
    assert fields["kwargs"] == {"k": "v"}
    assert fields["retries"] == 0
    assert fields["is_eager"] is False
    assert fields["called_directly"] is False
    assert fields["utc"] is True
    assert fields["root_id"] == result.id
    assert fields["parent_id"] is None
    assert fields["hostname"].startswith("djtasks@")
    assert fields["delivery_info"]["routing_key"] == queue_name
    assert fields["timelimit"] == [60, 50]
    assert fields["expires"] is not None
    assert fields["eta"] is None
    assert fields["headers"] == {"h": "x"}


# -- retries ------------------------------------------------------------------------------------
def test_a_retry_chain_ends_in_success_on_the_third_try(worker, app_settings, tmp_path, events_file):
    result = execution.flaky.delay(str(tmp_path / "tries"))
    # Between tries the task is RETRY, with the reason; the countdown keeps it so for 1 s.
    wait_until(lambda: result.state == states.RETRY, message="state RETRY")
    reason = djtasks.app.AsyncResult(result.id).info
    assert isinstance(reason, execution.FlakyError)
    assert str(reason).startswith("attempt ")
    assert result.get(timeout=30) == 2  # the same id, run a third time, with retries == 2
    assert (tmp_path / "tries").read_text() == "xxx"
    assert djtasks.app.AsyncResult(result.id).retries == 2
    retried = [e for e in events(events_file, result.id) if e["event"] == "task_retry"]
    assert [e["reason"] for e in retried] == ["Retry in 1s: FlakyError('attempt 1')",
                                              "Retry in 1s: FlakyError('attempt 2')"]


def test_autoretry_for_retries_with_backoff_until_it_succeeds(worker, app_settings, tmp_path):
    result = execution.autoretried.delay(str(tmp_path / "tries"))
    assert result.get(timeout=30) == 2
    assert (tmp_path / "tries").read_text() == "xxx"


def test_past_max_retries_the_original_exception_fails_the_task(worker, app_settings, tmp_path):
    result = execution.gives_up.delay(str(tmp_path / "tries"))
    with pytest.raises(execution.FlakyError, match="attempt 3"):
        result.get(timeout=30)
    assert (tmp_path / "tries").read_text() == "xxx"  # the first run and max_retries=2 retries
    assert result.state == states.FAILURE


def test_past_max_retries_without_a_reason_raises_max_retries_exceeded(worker, app_settings):
    with pytest.raises(MaxRetriesExceededError, match="Can't retry"):
        execution.gives_up_without_reason.delay().get(timeout=30)


# -- Reject, Ignore, throws -------------------------------------------------------------------
def test_reject_with_requeue_runs_the_task_again(worker, app_settings, tmp_path):
    result = execution.reject_once.delay(str(tmp_path / "tries"))
    assert result.get(timeout=30) == "second"
    worker.wait_for_line(rf"Task .*reject_once\[{result.id}\] rejected: Reject\(requeue=True\)")


def test_reject_without_requeue_drops_the_message(worker, app_settings, tmp_path, broker, queue_name):
    result = execution.reject_for_good.delay(str(tmp_path / "tries"))
    worker.wait_for_line(rf"Task .*reject_for_good\[{result.id}\] rejected: Reject\(requeue=False\)")
    assert result.state == states.PENDING  # nothing stored, and never run again
    assert _queue_size(broker, queue_name) == 0
    assert (tmp_path / "tries").read_text() == "x"


def test_ignore_leaves_the_state_the_task_stored(worker, app_settings):
    result = execution.ignored.delay()
    worker.wait_for_line(rf"Task .*ignored\[{result.id}\] ignored")
    assert result.state == "HANDLED"
    assert result.info == {"by": "the task"}


def test_an_exception_the_task_throws_is_logged_without_traceback(worker, app_settings):
    result = execution.expected_failure.delay()
    with pytest.raises(execution.FlakyError):
        result.get(timeout=30)
    worker.wait_for_line(rf"INFO.*Task .*expected_failure\[{result.id}\] raised expected: FlakyError")


# -- progress ------------------------------------------------------------------------------------
def test_update_state_progress_reaches_get_on_message(worker, app_settings):
    seen: list[dict] = []
    result = execution.progress.delay(3)
    assert result.get(timeout=30, interval=0.05, on_message=seen.append) == 3
    progress = [m for m in seen if m["status"] == "PROGRESS"]
    assert progress, seen
    assert all(m["result"]["total"] == 3 and m["task_id"] == result.id for m in progress)
    assert seen[-1]["status"] == states.SUCCESS
    assert seen[-1]["result"] == 3


# -- handlers, Request class, signals, logging ----------------------------------------------
def test_handlers_and_signals_of_a_success(worker, app_settings, tmp_path, events_file):
    result = execution.handled.delay(str(tmp_path / "tries"), "success")
    assert result.get(timeout=30) == 1
    expected = ["task_received", "task_prerun", "on_success", "task_success", "after_return",
                "task_postrun", "request.on_success"]
    wait_until(lambda: names(events_file, result.id) == expected,
               message=f"events {expected} (got {names(events_file, result.id)})")
    success = [e for e in events(events_file, result.id) if e["event"] == "task_success"]
    assert success[0]["result"] == 1  # the receiver read sender.request.id, as in Celery


def test_handlers_and_signals_of_a_failure(worker, app_settings, tmp_path, events_file):
    result = execution.handled.delay(str(tmp_path / "tries"), "failure")
    with pytest.raises(execution.FlakyError):
        result.get(timeout=30)
    expected = ["task_received", "task_prerun", "on_failure", "task_failure", "after_return",
                "task_postrun", "request.on_failure"]
    wait_until(lambda: names(events_file, result.id) == expected,
               message=f"events {expected} (got {names(events_file, result.id)})")
    on_failure = next(e for e in events(events_file, result.id) if e["event"] == "on_failure")
    assert on_failure["exc"] == "FlakyError('failed on purpose')"
    assert on_failure["traceback"]


def test_handlers_and_signals_of_a_retry(worker, app_settings, tmp_path, events_file):
    result = execution.handled.delay(str(tmp_path / "tries"), "retry")
    assert result.get(timeout=30) == 2
    # The retry is sent before the first run's handlers fire: with two pool processes the
    # second run may finish first, so each run's events are checked, not their interleaving.
    wanted = {"on_retry", "task_retry", "on_success", "task_success"}
    wait_until(lambda: wanted <= set(names(events_file, result.id)),
               message=f"events {wanted} (got {names(events_file, result.id)})")
    found = events(events_file, result.id)
    assert sorted(e["state"] for e in found if e["event"] == "task_postrun") == [states.RETRY,
                                                                                  states.SUCCESS]
    assert next(e for e in found if e["event"] == "on_retry")["exc"] == "FlakyError('once more')"
    assert [n for n in names(events_file, result.id) if n in wanted].count("on_retry") == 1


def test_a_request_class_named_by_path_hears_of_a_soft_time_limit(worker, app_settings, events_file):
    result = execution.request_by_path.delay(5)
    with pytest.raises(Exception, match="soft time limit"):
        result.get(timeout=30)
    wait_until(lambda: "request.on_timeout" in names(events_file, result.id),
               message=f"request.on_timeout (got {names(events_file, result.id)})")
    timeout = next(e for e in events(events_file, result.id) if e["event"] == "request.on_timeout")
    assert timeout["soft"] is True
    assert timeout["timeout"] == 1


def test_worker_signals_fire_once_and_process_init_in_each_child(worker, app_settings, events_file):
    wait_until(lambda: len([e for e in events(events_file) if e["event"] == "worker_process_init"]) >= 2,
               message="worker_process_init in both pool processes")
    fired = [e["event"] for e in events(events_file) if e["event"].startswith("worker_")]
    assert fired.count("worker_init") == 1
    assert fired.count("worker_ready") == 1
    parent = {e["pid"] for e in events(events_file) if e["event"] == "worker_init"}
    children = {e["pid"] for e in events(events_file) if e["event"] == "worker_process_init"}
    assert parent.isdisjoint(children)


def test_unknown_and_revoked_tasks_send_their_signals(worker, app_settings, events_file):
    unknown = djtasks.app.send_task("tests.testapp.execution.no_such_task")
    wait_until(lambda: "task_unknown" in names(events_file, unknown.id), message="task_unknown")
    expired = execution.request_fields.apply_async(expires=-1)
    wait_until(lambda: "task_revoked" in names(events_file, expired.id), message="task_revoked")
    assert next(e for e in events(events_file, expired.id)
                if e["event"] == "task_revoked")["expired"] is True


def test_task_logger_records_carry_the_task_name_and_id(worker, app_settings):
    result = execution.logs_a_line.delay("hello")
    assert result.get(timeout=30) == result.id
    worker.wait_for_line(rf"INFO/.*\] {execution.logs_a_line.name}\[{result.id}\]: task says hello$")


def _queue_size(broker, queue: str) -> int:
    with kombu.Connection(broker.broker_url) as connection:
        bound = kombu.Queue(queue, kombu.Exchange(queue), routing_key=queue)(connection.default_channel)
        return bound.queue_declare(passive=False).message_count
