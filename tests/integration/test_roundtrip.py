"""Define, send, run and read back tasks with a real worker, over every broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kombu.exceptions import EncodeError

import djtasks
from djtasks import states
from djtasks.exceptions import TaskRevokedError, WorkerLostError
from tests.integration.conftest import DATABASES
from tests.testapp import tasks
from tests.testapp.tasks import CustomError

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


def test_delay_get_round_trip(worker, app_settings):
    assert tasks.add.delay(4, 4).get(timeout=20) == 8


def test_send_task_by_name_and_result_fields(worker, app_settings):
    result = djtasks.app.send_task("tests.testapp.tasks.mul", (6, 7))
    assert result.get(timeout=20) == 42
    assert result.state == states.SUCCESS
    assert result.successful()
    assert result.ready()
    assert not result.failed()
    assert result.name == "tests.testapp.tasks.mul"
    assert result.date_done is not None
    assert result.date_done.tzinfo is not None
    worker.wait_for_line(rf"Task tests\.testapp\.tasks\.mul\[{result.id}\] succeeded in \d+\.\d+s: 42")


def test_bound_task_sees_its_request(worker, app_settings):
    result = tasks.whoami.delay()
    info = result.get(timeout=20)
    assert info["id"] == result.id
    assert info["task"] == "tests.testapp.tasks.whoami"
    assert info["hostname"].startswith("djtasks@")


def test_failure_reraises_the_original_exception_type(worker, app_settings):
    result = tasks.fail.delay("it broke")
    with pytest.raises(CustomError, match="it broke"):
        result.get(timeout=20)
    assert result.state == states.FAILURE
    assert "CustomError" in result.traceback
    assert isinstance(result.result, CustomError)
    assert result.get(timeout=1, propagate=False).args == ("it broke",)


def test_get_inside_a_task_is_refused(worker, app_settings):
    first = tasks.add.delay(1, 1)
    with pytest.raises(RuntimeError, match=r"Never call result\.get\(\) within a task"):
        tasks.wait_for_other.delay(first.id).get(timeout=20)


def test_a_value_that_is_not_json_fails_clearly(worker, app_settings):
    with pytest.raises(EncodeError, match="cannot be stored as JSON"):
        tasks.unserializable.delay().get(timeout=20)


def test_a_result_and_an_error_over_result_max_size_are_cut_and_say_so(worker, app_settings):
    # 1,000,000 numbers are 7.9 MB of JSON; the default limit keeps 64 KiB of it.
    cut = tasks.numbers.delay(1_000_000).get(timeout=60)
    assert cut.startswith("[0, 1, 2, ")
    assert cut.endswith(" ...[cut: 7,888,890 bytes as JSON, over result_max_size 65,536]")
    assert len(cut) < 65_536
    with pytest.raises(CustomError, match=r"over result_max_size 65,536\]$"):
        tasks.fail_at_length.delay(1_000_000).get(timeout=60)
    assert tasks.numbers.delay(10).get(timeout=20) == list(range(10))  # small: as it was


def test_many_tasks_all_come_back(worker, app_settings):
    results = [tasks.add.delay(i, i) for i in range(40)]
    assert [r.get(timeout=30) for r in results] == [2 * i for i in range(40)]


def test_ignored_result_stays_pending(worker, app_settings):
    ignored = tasks.add.apply_async((1, 2), ignore_result=True)
    after = tasks.add.delay(2, 3)
    assert after.get(timeout=20) == 5
    worker.wait_for_line(rf"\[{ignored.id}\] succeeded")
    assert ignored.state == states.PENDING


@pytest.mark.parametrize("crashing", [tasks.crash, tasks.segfault], ids=["exit", "segfault"])
def test_prefork_child_crash_fails_the_task_and_the_worker_goes_on(worker, app_settings, crashing):
    result = crashing.delay()
    with pytest.raises(WorkerLostError, match="exited prematurely"):
        result.get(timeout=30)
    assert tasks.add.delay(20, 22).get(timeout=20) == 42


def test_message_past_its_expiry_is_not_run(worker, app_settings):
    result = tasks.add.apply_async((1, 1), expires=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(TaskRevokedError, match="expired"):
        result.get(timeout=20)
    assert result.state == states.REVOKED
    worker.wait_for_line(rf"\[{result.id}\] expired")


def test_message_within_its_expiry_runs(worker, app_settings):
    assert tasks.add.apply_async((1, 2), expires=60).get(timeout=20) == 3


def test_result_extended_stores_name_args_kwargs_worker_and_queue(worker_factory, app_settings, queue_name):
    own_queue = f"{queue_name}-extended"  # the module's worker stores no arguments
    worker_factory("-c", "1", "-Q", own_queue, "-n", "extended@%h", env={"DJTASKS_RESULT_EXTENDED": "true"})
    result = tasks.add.apply_async((2,), {"y": 5}, queue=own_queue)
    assert result.get(timeout=20) == 7
    assert (result.name, result.args, result.kwargs) == ("tests.testapp.tasks.add", [2], {"y": 5})
    assert result.worker.startswith("extended@")
    assert result.queue == own_queue
