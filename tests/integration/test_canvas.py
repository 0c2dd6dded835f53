"""The canvas guide's examples, and chords that never hang, with real workers over every broker."""

from __future__ import annotations

import pytest

import djtasks
from djtasks import states
from djtasks.canvas import chain, chord, group
from djtasks.exceptions import ChordError
from djtasks.result import GroupResult
from tests.integration.conftest import DATABASES, wait_until
from tests.testapp import tasks
from tests.testapp.tasks import CustomError

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES)]

TIMEOUT = 60


def lines(path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


# -- the canvas guide ----------------------------------------------------------------------
def test_simple_chain(worker, app_settings):
    result = (tasks.add.s(2, 2) | tasks.add.s(4) | tasks.add.s(8))()
    assert result.get(timeout=TIMEOUT) == 16


def test_immutable_chain_and_its_parents(worker, app_settings):
    result = (tasks.add.si(2, 2) | tasks.add.si(4, 4) | tasks.add.si(8, 8))()
    assert result.get(timeout=TIMEOUT) == 16
    assert result.parent.get(timeout=TIMEOUT) == 8
    assert result.parent.parent.get(timeout=TIMEOUT) == 4


def test_group_of_ten(worker, app_settings):
    result = group(tasks.add.s(i, i) for i in range(10))()
    assert result.get(timeout=TIMEOUT) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert result.successful()
    assert result.completed_count() == 10


def test_chain_of_signature_and_partial(worker, app_settings):
    assert chain(tasks.add.s(4, 4) | tasks.mul.s(8))().get(timeout=TIMEOUT) == 64


def test_link_callback_is_a_child(worker, app_settings):
    result = tasks.add.apply_async((2, 2), link=tasks.add.s(16))
    assert result.get(timeout=TIMEOUT) == 4
    [child] = result.children
    assert child.get(timeout=TIMEOUT) == 20
    assert child.id in str(result.graph)


def test_errbacks(worker, app_settings, tmp_path):
    errors, ids = tmp_path / "errors.txt", tmp_path / "ids.txt"
    result = tasks.fail.apply_async(("bad",), link_error=[tasks.log_error.s(str(errors)),
                                                           tasks.log_failed_id.s(path=str(ids))])
    with pytest.raises(CustomError):
        result.get(timeout=TIMEOUT)
    wait_until(lambda: lines(errors) and lines(ids), timeout=TIMEOUT, message="both errbacks ran")
    assert lines(errors) == [f"{result.id} CustomError bad"]
    assert lines(ids) == [result.id]


def test_chunks_map_and_starmap(worker, app_settings):
    chunked = tasks.add.chunks(zip(range(100), range(100), strict=True), 10)()
    assert chunked.get(timeout=TIMEOUT) == [[2 * i for i in range(j, j + 10)] for j in range(0, 100, 10)]
    assert tasks.xsum.map([list(range(10)), list(range(100))]).delay().get(timeout=TIMEOUT) == [45, 4950]
    assert tasks.add.starmap(zip(range(10), range(10), strict=True)).delay().get(timeout=TIMEOUT) == \
        [2 * i for i in range(10)]


def test_failed_chain_step_stops_the_chain(worker, app_settings, tmp_path):
    runs = tmp_path / "runs.txt"
    result = chain(tasks.add.s(1, 1), tasks.fail.si("stop"),
                   tasks.record.si(str(runs), "after")).on_error(tasks.log_error.s(str(tmp_path / "e")))()
    with pytest.raises(CustomError, match="stop"):
        result.get(timeout=TIMEOUT)  # the steps after the failure are failed too, not left pending
    assert result.parent.state == states.FAILURE
    assert not runs.exists()


def test_nesting(worker, app_settings):
    chain_of_groups = (group(tasks.add.s(1, 1), tasks.add.s(2, 2)) | tasks.xsum.s())()
    group_of_chains = group(tasks.add.s(i, i) | tasks.mul.s(2) for i in range(3))()
    chord_in_chain = chain(tasks.add.s(1, 1), chord([tasks.add.s(1), tasks.add.s(2)], tasks.xsum.s()),
                           tasks.mul.s(10))()
    chain_as_body = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.xsum.s() | tasks.mul.s(3))()
    assert chain_of_groups.get(timeout=TIMEOUT) == 6
    assert group_of_chains.get(timeout=TIMEOUT) == [0, 4, 8]
    assert chord_in_chain.get(timeout=TIMEOUT) == 70
    assert chain_as_body.get(timeout=TIMEOUT) == 18


def test_a_chain_of_one_hundred_steps(worker, app_settings):
    result = chain(tasks.add.s(0, 1), *[tasks.add.s(1) for _ in range(99)])()
    assert result.get(timeout=TIMEOUT) == 100


def test_group_result_saved_and_restored(worker, app_settings):
    result = group(tasks.add.s(1, 1), tasks.mul.s(3, 3))()
    result.save()
    assert GroupResult.restore(result.id).get(timeout=TIMEOUT) == [2, 9]


# -- chords ----------------------------------------------------------------------------------
def test_chord_with_empty_header_runs_its_body_at_once(worker, app_settings):
    assert chord([], tasks.identity.s())().get(timeout=TIMEOUT) == []


def test_chord_of_a_thousand_over_two_workers_runs_its_body_once(worker, worker_factory,
                                                                  app_settings, tmp_path):
    worker_factory("-c", "2", "-n", "second@%h")
    runs = tmp_path / "body.txt"
    result = chord((tasks.add.s(i, i) for i in range(1000)), tasks.collect.s(str(runs)))()
    assert result.get(timeout=240) == [2 * i for i in range(1000)]
    assert lines(runs) == ["1000"], "the body ran exactly once"
    workers = {meta.worker for meta in djtasks.app.backend.get_many(
        [member.id for member in result.parent.results]).values()}
    assert len(workers) == 2, "both workers ran header tasks"


def test_chord_with_a_failing_header_never_runs_its_body(worker, app_settings, tmp_path):
    runs, errors = tmp_path / "body.txt", tmp_path / "errors.txt"
    body = tasks.collect.s(str(runs)).on_error(tasks.log_error.s(str(errors)))
    result = chord([tasks.add.s(1, 1), tasks.fail.si("header"), tasks.add.s(2, 2)], body)()
    with pytest.raises(ChordError):
        result.get(timeout=TIMEOUT)
    failed_id = result.parent.results[1].id
    wait_until(lambda: lines(errors), timeout=TIMEOUT, message="the body's errback ran")
    [line] = lines(errors)
    assert line.startswith(f"{result.id} ChordError")
    assert failed_id in line
    wait_until(lambda: result.parent.ready(), timeout=TIMEOUT, message="the header finished")
    assert not runs.exists(), "the body never runs"


def test_chord_across_workers_on_different_queues(worker, worker_factory, app_settings, queue_name,
                                                  tmp_path):
    body_queue = f"{queue_name}-body"
    worker_factory("-c", "1", "-Q", body_queue, "-n", "body@%h")
    runs = tmp_path / "body.txt"
    result = chord([tasks.add.s(i, i) for i in range(5)],
                   tasks.collect.s(str(runs)).set(queue=body_queue))()
    assert result.get(timeout=TIMEOUT) == [0, 2, 4, 6, 8]
    assert result.worker.startswith("body@")
    assert {member.worker.split("@")[0] for member in result.parent.results} == {"djtasks"}


def test_chord_completes_once_when_a_header_worker_is_killed(worker_factory, app_settings, broker,
                                                             queue_name, tmp_path):
    chord_queue = f"{queue_name}-killed"
    env = {"DJTASKS_BROKER_TRANSPORT_OPTIONS": '{"visibility_timeout": 3}'}
    # A prefetch of exactly the two tasks it runs: on Redis a BRPOP still in flight when the
    # worker dies loses the message it popped (kombu's Redis transport, see the README), and
    # this test is about the chord, not about that window.
    first = worker_factory("-c", "2", "--prefetch-multiplier", "1", "-Q", chord_queue, env=env)
    runs = tmp_path / "body.txt"
    header = [tasks.slow_add.s(i, i, 1.0).set(queue=chord_queue) for i in range(6)]
    result = chord(header, tasks.collect.s(str(runs)).set(queue=chord_queue))()
    first.wait_for_line(r"slow_add\[.*\] received", count=2)
    first.kill_group()  # mid-header: two tasks running (acks_late), the rest still queued

    worker_factory("-c", "2", "-Q", chord_queue, env=env)
    assert result.get(timeout=120) == [2 * i for i in range(6)]
    assert lines(runs) == ["6"], "the body ran exactly once"
